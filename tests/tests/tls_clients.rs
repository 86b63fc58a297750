//! TLS connections that move, with clients nobody here wrote: curl and Python's `ssl`
//! (both OpenSSL) keep one connection each through 20 reloads of `lb-serve` over TLS,
//! in every suite a moved session continues (TLS 1.3's three, and TLS 1.2's ECDHE with
//! AES-GCM and ChaCha20-Poly1305); and `openssl s_client`, asking for new keys on a
//! session that moved, sees it end with an alert.
//!
//! Each test needs its tool (`curl`, `python3`, `openssl`): they are `#[ignore]`d, so
//! that they never pass without it, and `.ci/run` installs the tools and runs them.
//! A missing tool fails the test, naming the Debian package that has it.

use littleboss_tests::http_support::Certs;
use littleboss_tests::{Env, Spawned, Supervisor, bin, required_tool, wait_gone};

/// How long each request waits in the server: a reload happens meanwhile, and the
/// client's next request, on the same connection, goes to the new process.
const SLOW_MS: u64 = 400;

/// How many reloads each client's connection goes through.
const RELOADS: usize = 20;

/// How many requests each client sends: some more than the reloads, so that a client
/// that was answered twice by one process is still there at the last reload.
const REQUESTS: usize = RELOADS + 6;

/// The suites, as OpenSSL names them: (TLS 1.3 or not, name).
const SUITES: [(bool, &str); 6] = [
    (true, "TLS_AES_128_GCM_SHA256"),
    (true, "TLS_AES_256_GCM_SHA384"),
    (true, "TLS_CHACHA20_POLY1305_SHA256"),
    (false, "ECDHE-ECDSA-AES128-GCM-SHA256"),
    (false, "ECDHE-ECDSA-AES256-GCM-SHA384"),
    (false, "ECDHE-ECDSA-CHACHA20-POLY1305"),
];

/// `lb-serve` over TLS with a new certificate for `localhost`.
fn start(env: &Env) -> (Supervisor<'_>, Certs) {
    let certs = Certs::new(env.path(), "localhost");
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let args = ["--http=127.0.0.1:0", "--", "--cert", cert, "--key", key];
    (env.start(bin!("lb-serve"), &args), certs)
}

/// Reloads `sup` RELOADS times, each once every one of `clients` has a request waiting
/// in the serving child (its log says so); the serving children's pids, in order, the
/// first one first.
fn reload_under(env: &Env, sup: &Supervisor<'_>, clients: usize) -> Vec<u32> {
    let mut pids = vec![sup.child_pid()];
    for _ in 0..RELOADS {
        let pid = *pids.last().unwrap();
        let line = format!("lb-serve: pid {pid} slow {SLOW_MS}");
        sup.wait_for("every client's request in the serving child", || {
            (sup.logs().matches(&line).count() >= clients).then_some(())
        });
        let outcome = env.run(bin!("lb-serve"), &["--littleboss=reload"]);
        assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
        wait_gone(pid, "the old child");
        pids.push(sup.child_pid());
    }
    pids
}

/// Each client (a label and its process) printed the answer of each request (`pid N`)
/// and how many connections it opened: all its requests went on one connection, each
/// was answered, and the connection followed the reloads through `pids` (the serving
/// children, in order); and every reload moved every client's connection. A request may be answered by the process a reload
/// replaces, if it came before the connection moved; then the connection moves after
/// it, and may find the reload after that done already (the other clients set the
/// pace): so each client's answers come from `pids` in order, not from every one.
fn each_kept_its_connection(sup: &Supervisor<'_>, clients: &[(String, Spawned)], pids: &[u32]) {
    let log = sup.logs();
    let moved = format!("; {} connections moved to the new child", clients.len());
    assert_eq!(log.matches(&moved).count(), RELOADS, "{log}");
    for (label, client) in clients {
        let code = client.wait_code();
        let out = client.stdout();
        assert_eq!(
            code,
            0,
            "{label}: {out}\n{}\n{}",
            client.stderr(),
            sup.logs()
        );
        let answered: Vec<usize> = (out.lines())
            .filter_map(|line| line.strip_prefix("pid ")?.split(' ').next()?.parse().ok())
            .map(|pid: u32| {
                (pids.iter().position(|p| *p == pid))
                    .unwrap_or_else(|| panic!("{label}: pid {pid} is no child: {out}"))
            })
            .collect();
        assert_eq!(answered.len(), REQUESTS, "{label}: {out}\n{}", sup.logs());
        assert!(answered.is_sorted(), "{label}: {out}");
        let mut distinct = answered.clone();
        distinct.dedup();
        assert!(
            distinct.len() > RELOADS / 2,
            "{label} did not follow the reloads: {out}"
        );
        let connects: Vec<&str> = (out.lines())
            .filter_map(|line| line.strip_prefix("connects "))
            .collect();
        // curl says how many it opened for each request, Python how many more than
        // one in all.
        let one = (connects.iter().skip(1).all(|c| *c == "0")) && connects.first() == Some(&"1")
            || connects == ["0"];
        assert!(one, "{label} opened more than one connection: {out}");
    }
}

#[test]
#[ignore = "needs curl"]
fn curl_keeps_one_connection_through_twenty_reloads_in_every_suite() {
    let curl = required_tool("curl", "curl");
    let env = Env::new();
    let (sup, certs) = start(&env);
    let addr = sup.addr("http");
    let url = format!("https://localhost:{}/slow/{SLOW_MS}", addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    let clients: Vec<(String, Spawned)> = (SUITES.iter())
        .map(|(tls13, suite)| {
            let mut args: Vec<String> = vec![
                "--silent".into(),
                "--show-error".into(),
                "--http1.1".into(),
                "--cacert".into(),
                certs.cert.display().to_string(),
                "--resolve".into(),
                resolve.clone(),
                // After each answer: how many new connections it took.
                "--write-out".into(),
                "\nconnects %{num_connects}\n".into(),
            ];
            if *tls13 {
                args.extend([
                    "--tlsv1.3".into(),
                    "--tls13-ciphers".into(),
                    suite.to_string(),
                ]);
            } else {
                args.extend([
                    "--tlsv1.2".into(),
                    "--tls-max".into(),
                    "1.2".into(),
                    "--ciphers".into(),
                    suite.to_string(),
                ]);
            }
            args.extend(std::iter::repeat_n(url.clone(), REQUESTS));
            (format!("curl {suite}"), env.spawn(&curl, &args))
        })
        .collect();
    let pids = reload_under(&env, &sup, clients.len());
    each_kept_its_connection(&sup, &clients, &pids);
    let log = sup.logs();
    assert!(
        log.contains(&format!("; {} connections moved", clients.len())),
        "{log}"
    );
}

/// The Python client: one `http.client.HTTPSConnection`, `REQUESTS` requests on it;
/// before each, it looks whether the server closed the connection meanwhile, as a pool
/// does (a readable socket between two requests), and counts a connection it had to
/// open again.
const PYTHON_CLIENT: &str = r#"
import http.client, select, ssl, sys

port, cafile, version, suite, count, path = sys.argv[1:7]
context = ssl.create_default_context(cafile=cafile)
if version == "1.3":
    context.minimum_version = ssl.TLSVersion.TLSv1_3
else:
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(suite)
conn = http.client.HTTPSConnection("localhost", int(port), context=context, timeout=30)
connects = 0
for _ in range(int(count)):
    if conn.sock is None or select.select([conn.sock], [], [], 0)[0]:
        conn.close()
        conn.connect()
        connects += 1
    conn.request("GET", path)
    response = conn.getresponse()
    print(response.read().decode().strip(), flush=True)
    if conn.sock.cipher()[0] != suite:
        sys.exit("negotiated " + conn.sock.cipher()[0] + ", not " + suite)
print("connects", connects - 1 if connects else 0)
"#;

#[test]
#[ignore = "needs python3"]
fn python_ssl_keeps_one_connection_through_twenty_reloads_in_every_suite() {
    let python = required_tool("python3", "python3");
    let env = Env::new();
    let (sup, certs) = start(&env);
    let script = env.path().join("client.py");
    std::fs::write(&script, PYTHON_CLIENT).expect("write the client");
    let port = sup.addr("http").port().to_string();
    let path = format!("/slow/{SLOW_MS}");
    let count = REQUESTS.to_string();
    let clients: Vec<(String, Spawned)> = (SUITES.iter())
        .map(|(tls13, suite)| {
            let (version, vars) = if *tls13 {
                // TLS 1.3's suites are chosen through OpenSSL's configuration.
                let conf = env.path().join(format!("{suite}.cnf"));
                std::fs::write(&conf, openssl_conf(suite)).expect("write the configuration");
                ("1.3", vec![("OPENSSL_CONF", conf.display().to_string())])
            } else {
                ("1.2", Vec::new())
            };
            let cafile = certs.cert.display().to_string();
            let args = [
                script.display().to_string(),
                port.clone(),
                cafile,
                version.to_string(),
                suite.to_string(),
                count.clone(),
                path.clone(),
            ];
            let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            (
                format!("python {suite}"),
                env.spawn_with(&python, &args, &vars),
            )
        })
        .collect();
    let pids = reload_under(&env, &sup, clients.len());
    each_kept_its_connection(&sup, &clients, &pids);
}

/// An OpenSSL configuration whose TLS 1.3 suites are `suite` alone.
fn openssl_conf(suite: &str) -> String {
    format!(
        "openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\nsystem_default = tls\n\
         [tls]\nCiphersuites = {suite}\nMinProtocol = TLSv1.3\n"
    )
}

/// `openssl s_client`, on a TLS 1.3 session that moved, asks for new keys (its `K`
/// command): the server cannot make them and ends the session with an alert, which
/// s_client reports; the server serves on.
#[test]
#[ignore = "needs openssl"]
fn a_key_update_from_openssl_s_client_after_a_move_ends_its_session_with_an_alert() {
    use std::io::Write;
    let openssl = required_tool("openssl", "openssl");
    let env = Env::new();
    let (sup, certs) = start(&env);
    let addr = sup.addr("http");
    let (reader, writer) = rustix::pipe::pipe().expect("a pipe");
    let args = [
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        "localhost",
        "-CAfile",
        certs.cert.to_str().unwrap(),
        "-tls1_3",
        "-crlf",
    ];
    let client = env.spawn_prepared(&openssl, &args, &[], move |command| {
        command.stdin(std::process::Stdio::from(reader));
    });
    let mut stdin = std::fs::File::from(writer);
    let said = |pid: u32| {
        let line = format!("pid {pid}");
        let client = &client;
        move || client.stdout().contains(&line).then_some(())
    };
    let first = sup.child_pid();
    stdin
        .write_all(b"GET / HTTP/1.1\nHost: localhost\n\n")
        .expect("a request");
    sup.wait_for("the first answer", said(first));
    let outcome = env.run(bin!("lb-serve"), &["--littleboss=reload"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}");
    wait_gone(first, "the old child");
    let new = sup.child_pid();
    stdin
        .write_all(b"GET / HTTP/1.1\nHost: localhost\n\n")
        .expect("a request");
    sup.wait_for("the answer of the new process", said(new));
    // `K` alone on a line: a KeyUpdate that asks for the server's keys to change too.
    stdin.write_all(b"K\n").expect("a key update");
    let code = client.wait_code();
    let said = format!("{}{}", client.stdout(), client.stderr());
    assert!(
        said.contains("alert"),
        "no alert seen (exit code {code}):\n{said}\n{}",
        sup.logs()
    );
    let log = sup.logs();
    assert!(!log.contains("panicked"), "{log}");
    let body = littleboss_tests::http_support::https_get(addr, &certs).expect("served on");
    assert!(body.contains(&format!("pid {new}")), "{body}");
}
