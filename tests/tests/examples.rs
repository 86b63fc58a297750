//! The example programs of `littleboss-examples` (`examples/examples/*.rs`), run as
//! they are: supervised with their listener moved to port 0, answering, reloaded to a
//! copy, stopped.
//!
//! They are built by `cargo test` of the workspace into `<target>/debug/examples/NAME`
//! (`cargo build -p littleboss-examples --examples` builds them alone).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use littleboss_tests::http_support::{Certs, Client, Outcome, Version, https_get};
use littleboss_tests::systemd_support::supervise_running;
use littleboss_tests::{Env, Supervisor, example, http_get, wait_gone};

/// The pid in an example's answer: the number after the last `pid `.
fn pid_in(body: &str) -> u32 {
    body.rsplit_once("pid ")
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no pid in the answer {body:?}"))
}

fn addr_of(sup: &Supervisor<'_>, listener: &str) -> SocketAddr {
    sup.addr(listener)
}

/// Sends `message` to a UDP service and returns its answer.
fn udp_ask(addr: SocketAddr, message: &str) -> std::io::Result<String> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.send_to(message.as_bytes(), addr)?;
    let mut buf = [0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf)?;
    if from != addr {
        return Err(std::io::Error::other(format!("an answer from {from}")));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// How to ask an example for an answer.
#[derive(Clone, Copy)]
enum Ask {
    Http,
    Udp,
}

impl Ask {
    fn listener(self) -> &'static str {
        match self {
            Ask::Http => "http",
            Ask::Udp => "echo",
        }
    }

    fn once(self, addr: SocketAddr) -> std::io::Result<String> {
        match self {
            Ask::Http => http_get(addr),
            Ask::Udp => udp_ask(addr, "hi"),
        }
    }
}

/// Waits for an answer from process `pid`; returns the body.
fn answer_from(sup: &Supervisor<'_>, ask: Ask, addr: SocketAddr, pid: u32) -> String {
    sup.wait_for(&format!("an answer from pid {pid} on {addr}"), || {
        ask.once(addr).ok().filter(|body| pid_in(body) == pid)
    })
}

/// Starts `name ARGS` (a command line that starts the supervisor), asks it, reloads it
/// to a copy, asks the new child, stops it.
fn start_reload_stop(name: &str, args: &[&str], ask: Ask, check: impl Fn(&str)) {
    let env = Env::new();
    let bin = example!(name);
    let mut argv = vec![bin.display().to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let sup = supervise_running(&env, &argv, &bin);
    let first = sup.child_pid();
    let addr = addr_of(&sup, ask.listener());
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    check(&answer_from(&sup, ask, addr, first));

    let copy = env.copy_binary(&bin, &format!("{name}-2"));
    let reload = env.run(&copy, &["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}\n{}", sup.logs());
    assert!(
        reload.stdout.contains(&format!("pid {first} -> ")),
        "{reload}"
    );
    let second = sup.child_pid();
    assert_ne!(second, first);
    let status = sup.status();
    assert_eq!(status["child_path"], copy.to_str().expect("UTF-8"));
    assert_eq!(addr_of(&sup, ask.listener()), addr, "the listener stays");
    check(&answer_from(&sup, ask, addr, second));
    wait_gone(first, "the old child");

    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    wait_gone(second, "the child");
}

#[test]
fn http_example() {
    start_reload_stop(
        "http",
        &["--littleboss=start", "--http=127.0.0.1:0"],
        Ask::Http,
        |body| {
            assert!(
                body.starts_with("pid ") && body.contains(" exe "),
                "{body:?}"
            );
        },
    );
}

#[test]
fn axum_example() {
    start_reload_stop(
        "axum",
        &["--littleboss=start", "--http=127.0.0.1:0"],
        Ask::Http,
        |body| {
            assert!(body.starts_with("hello from axum, pid "), "{body:?}");
        },
    );
}

#[test]
fn udp_example() {
    start_reload_stop(
        "udp",
        &["--littleboss=start", "--echo=127.0.0.1:0"],
        Ask::Udp,
        |body| {
            assert!(
                body.starts_with("pid ") && body.ends_with(": hi"),
                "{body:?}"
            );
        },
    );
}

#[test]
fn sync_example() {
    start_reload_stop(
        "sync",
        &["--littleboss=start", "--http=127.0.0.1:0"],
        Ask::Http,
        |body| {
            assert!(body.starts_with("hello from a sync main, pid "), "{body:?}");
        },
    );
}

#[test]
fn clap_example() {
    start_reload_stop(
        "clap",
        &["--littleboss", "start", "--http", "127.0.0.1:0"],
        Ask::Http,
        |body| {
            assert!(body.starts_with("hello from pid "), "{body:?}");
        },
    );
}

#[test]
fn http_example_refuses_arguments_before_it_is_ready() {
    let env = Env::new();
    let bin = example!("http");
    // Run directly, it exits at once.
    let outcome = env.run(&bin, &["--http=127.0.0.1:0", "--bogus"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("Error: http takes no arguments of its own; got \"--bogus\"\n"),
        "{outcome}"
    );
    // A reload to it fails, and the old child keeps serving.
    let sup = env.start(&bin, &["--http=127.0.0.1:0"]);
    let child = sup.child_pid();
    let addr = sup.addr("http");
    assert_eq!(pid_in(&http_get(addr).expect("GET")), child);
    let reload = sup.run(&["--littleboss=reload", "--", "--bogus"]);
    assert_eq!(reload.code(), Some(1), "{reload}");
    assert!(
        reload
            .stderr
            .contains("reload of http failed: new child pid ")
            && reload.stderr.contains("exited with code 1")
            && reload.stderr.contains(
                "(its main returned an error: http takes no arguments of its own; got \"--bogus\")"
            ),
        "{reload}"
    );
    assert_eq!(sup.child_pid(), child, "the old child still serves");
    assert_eq!(
        pid_in(&http_get(addr).expect("GET after the failed reload")),
        child
    );
    let status = sup.status();
    assert_eq!(status["reloads"], 0);
    assert_eq!(status["failures"], 1);
    assert_eq!(status["state"], "running");
}

#[test]
fn clap_example_help_lists_littleboss_flags() {
    let env = Env::new();
    let outcome = env.run(&example!("clap"), &["--help"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}");
    for flag in [
        "--littleboss <LITTLEBOSS>",
        "--http <HTTP>",
        "--greeting <GREETING>",
    ] {
        assert!(outcome.stdout.contains(flag), "{flag} in:\n{outcome}");
    }
}

#[test]
fn clap_example_takes_its_flags_at_start_and_at_reload() {
    let env = Env::new();
    let bin = example!("clap");
    let mut argv = vec![bin.display().to_string()];
    argv.extend(
        [
            "--littleboss",
            "start",
            "--http",
            "127.0.0.1:0",
            "--greeting",
            "hi",
        ]
        .map(String::from),
    );
    let sup = supervise_running(&env, &argv, &bin);
    let first = sup.child_pid();
    let addr = sup.addr("http");
    let body = answer_from(&sup, Ask::Http, addr, first);
    assert_eq!(body, format!("hi from pid {first}\n"));

    let reload = sup.run(&["--littleboss", "reload", "--", "--greeting", "bonjour"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    let second = sup.child_pid();
    assert_ne!(second, first);
    let body = answer_from(&sup, Ask::Http, addr, second);
    assert_eq!(body, format!("bonjour from pid {second}\n"));
    assert_eq!(sup.addr("http"), addr, "the listener stays where it was");

    let stop = sup.run(&["--littleboss", "stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
}

#[test]
fn https_example_reloads_keeps_its_certificate_and_refuses_a_bad_one() {
    let env = Env::new();
    let bin = example!("https");
    let certs = Certs::new(env.path(), "first");
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8").to_string();
    let (cert, key) = (path(&certs.cert), path(&certs.key));
    let sup = env.start(
        &bin,
        &["--https=127.0.0.1:0", "--cert", &cert, "--key", &key],
    );
    let addr = sup.addr("https");
    let first = sup.child_pid();
    let body = https_get(addr, &certs).expect("GET over TLS");
    assert!(body.starts_with(&format!("pid {first} exe ")), "{body:?}");

    // A reload without `--` keeps the certificate arguments.
    let copy = env.copy_binary(&bin, "https-2");
    let reload = env.run(&copy, &["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}\n{}", sup.logs());
    let second = sup.child_pid();
    assert_ne!(second, first);
    let body = https_get(addr, &certs).expect("GET after the reload");
    assert_eq!(pid_in(&body), second);

    // A certificate that is missing, or not PEM: the reload fails before the new process
    // is ready, says why, and the old one keeps serving.
    let missing = path(&env.path().join("missing.pem"));
    let garbage = env.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let garbage = path(&garbage);
    for (bad, why) in [
        (
            &missing,
            format!("certificate chain {missing}: No such file or directory"),
        ),
        (
            &garbage,
            format!("certificate chain {garbage}: no PEM item of the expected kind in it"),
        ),
    ] {
        let reload = sup.run(&["--littleboss=reload", "--", "--cert", bad, "--key", &key]);
        assert_eq!(reload.code(), Some(1), "{reload}");
        assert!(
            reload
                .stderr
                .contains("reload of https failed: new child pid ")
                && reload.stderr.contains("exited with code 1")
                && reload
                    .stderr
                    .contains(&format!("(its main returned an error: {why}")),
            "{reload}"
        );
        assert_eq!(sup.child_pid(), second, "the old child still serves");
        let body = https_get(addr, &certs).expect("GET after the failed reload");
        assert_eq!(pid_in(&body), second);
    }
    let status = sup.status();
    assert_eq!(status["reloads"], 1);
    assert_eq!(status["failures"], 2);
    assert_eq!(status["state"], "running");

    // A new certificate, given at reload.
    let renewed = Certs::new(env.path(), "second");
    let (cert, key) = (path(&renewed.cert), path(&renewed.key));
    let reload = sup.run(&["--littleboss=reload", "--", "--cert", &cert, "--key", &key]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    let third = sup.child_pid();
    let body = https_get(addr, &renewed).expect("GET with the new certificate");
    assert_eq!(pid_in(&body), third);
    assert!(
        https_get(addr, &certs).is_err(),
        "the old certificate is gone"
    );

    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    wait_gone(third, "the child");
}

#[test]
fn http_example_answers_http2() {
    let env = Env::new();
    let sup = env.start(&example!("http"), &["--http=127.0.0.1:0"]);
    let client = Client::plain(sup.addr("http"), Version::Http2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = runtime.block_on(client.get_once("/"));
    assert_eq!(
        outcome,
        Outcome::Answered {
            pid: sup.child_pid(),
            close: false
        }
    );
}
