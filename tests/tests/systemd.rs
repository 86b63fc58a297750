//! Under systemd: socket activation (with systemd's own `systemd-socket-activate`), the
//! notify protocol (`NOTIFY_SOCKET`), the example unit files, and where the
//! supervisor's log lines go (`Littleboss::log_with`).

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use littleboss_tests::systemd_support::{
    NotifyReceiver, environ_names_with, find_program, monotonic_usec, supervise, supervise_running,
    tcp_line,
};
use littleboss_tests::{
    Answer, DEADLINE, Env, Signal, Supervisor, bin, free_port, get, http_get_within, listener_addr,
    socket_inodes, wait_gone,
};

/// The variables that are the supervisor's alone.
const SUPERVISOR_VARS: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
];

/// The tool `program` of systemd's (`.ci/run` installs them), or a failure that says
/// how to get it: a test of this file never passes without running.
fn systemd_tool(program: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| {
        panic!(
            "{program} is not installed: it comes with the Debian package `systemd` \
             (apt-get install systemd); the tests of systemd's integration need it"
        )
    })
}

/// Starts `systemd-socket-activate [EXTRA...] -l 127.0.0.1:PORT... --fdname=NAMES -E
/// LITTLEBOSS_DIR BIN --littleboss=start` on `count` ports that were free, and waits
/// until it listens on all of them; tries again on other ports if another process took
/// one meanwhile. Returns the guard and the ports.
fn activated<'e>(
    env: &'e Env,
    count: usize,
    fdnames: &str,
    extra: &[&str],
    bin: &Path,
) -> (Supervisor<'e>, Vec<u16>) {
    for _ in 0..5 {
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < count {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let listen: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let sup = supervise(env, &activate_argv_with(&listen, fdnames, extra, bin), bin);
        let listening = sup.wait_for("systemd-socket-activate to listen", || {
            let stderr = sup.stderr();
            if listen
                .iter()
                .all(|l| stderr.contains(&format!("Listening on {l} ")))
            {
                return Some(true);
            }
            sup.try_exit().map(|_| false)
        });
        if listening {
            return (sup, ports);
        }
        eprintln!(
            "systemd-socket-activate failed; trying other ports\n{}",
            sup.logs()
        );
    }
    panic!("systemd-socket-activate could not listen on free ports five times");
}

/// `systemd-socket-activate [EXTRA...] -l LISTEN... --fdname=NAMES -E LITTLEBOSS_DIR BIN
/// --littleboss=start`.
fn activate_argv_with(listen: &[String], fdnames: &str, extra: &[&str], bin: &Path) -> Vec<String> {
    let activate = systemd_tool("systemd-socket-activate");
    let mut argv = vec![activate.display().to_string()];
    argv.extend(extra.iter().map(|s| s.to_string()));
    for address in listen {
        argv.extend(["-l".to_string(), address.clone()]);
    }
    argv.extend([
        format!("--fdname={fdnames}"),
        "-E".to_string(),
        "LITTLEBOSS_DIR".to_string(),
        bin.display().to_string(),
        "--littleboss=start".to_string(),
    ]);
    argv
}

/// `GET /` on a fresh connection, with a deadline long enough for the supervisor and its
/// first child to start behind it.
fn first_get(addr: SocketAddr) -> Answer {
    let body = http_get_within(addr, DEADLINE)
        .unwrap_or_else(|e| panic!("the first request to the activated socket {addr}: {e}"));
    Answer::parse(&body).unwrap_or_else(|| panic!("unexpected body {body:?}"))
}

fn pid_of(status: &littleboss_tests::Value) -> u32 {
    u32::try_from(status["child_pid"].as_u64().expect("a child pid")).expect("a pid")
}

#[test]
fn socket_activation_adopts_the_passed_socket() {
    let env = Env::new();
    let (sup, ports) = activated(&env, 1, "http", &[], bin!("lb-http"));
    let port = ports[0];
    // systemd-socket-activate holds the socket as fd 3 until a connection comes.
    let passed = socket_inodes(sup.pid());
    assert_eq!(passed.len(), 1, "one socket before the exec: {passed:?}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");

    let answer = first_get(addr);
    let status = sup.wait_running();
    let child = pid_of(&status);
    assert_eq!(answer.pid, child, "the child answered the first connection");
    assert_eq!(answer.mode, "supervised");
    assert_eq!(
        status["supervisor_pid"],
        sup.pid(),
        "systemd-socket-activate exec'd the supervisor"
    );
    assert_eq!(status["listeners"]["http"], format!("tcp:127.0.0.1:{port}"));
    // Adopted, not bound anew: the supervisor and its child hold the very socket.
    assert!(
        socket_inodes(sup.pid()).contains(&passed[0]),
        "the supervisor holds the passed socket {passed:?}: {:?}",
        socket_inodes(sup.pid())
    );
    assert!(
        socket_inodes(child).contains(&passed[0]),
        "the child holds the passed socket {passed:?}: {:?}",
        socket_inodes(child)
    );
    assert_eq!(get(addr).expect("a second GET").pid, child);
    assert_eq!(
        environ_names_with(child, SUPERVISOR_VARS),
        Vec::<String>::new(),
        "the child sees none of systemd's variables"
    );
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    wait_gone(child, "the child");
}

#[test]
fn socket_activation_reload_keeps_the_adopted_socket() {
    let env = Env::new();
    let (sup, ports) = activated(&env, 1, "http", &[], bin!("lb-http"));
    let port = ports[0];
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    first_get(addr);
    let old = pid_of(&sup.wait_running());
    let copy = env.copy_binary(bin!("lb-http"), "lb-http-2");
    let reload = env.run(&copy, &["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    let new = sup.child_pid();
    assert_ne!(new, old);
    sup.wait_for("the new child to answer on the activated socket", || {
        get(addr).ok().filter(|a| a.pid == new)
    });
    wait_gone(old, "the old child");
    assert_eq!(
        sup.status()["listeners"]["http"],
        format!("tcp:127.0.0.1:{port}")
    );
}

#[test]
fn socket_activation_closes_a_socket_no_listener_declares() {
    let env = Env::new();
    let (sup, ports) = activated(&env, 1, "other", &[], bin!("lb-http"));
    let port = ports[0];
    let activated: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    // The first connection makes systemd-socket-activate start the supervisor; nobody
    // will ever answer it, and closing the socket may reset it before the connect call
    // returns.
    let trigger = TcpStream::connect_timeout(&activated, DEADLINE);
    let status = sup.wait_running();
    drop(trigger);
    sup.wait_for_log(
        "littleboss: lbhttp: systemd passed a socket named \"other\" that no listener declares; closed it",
    );
    let addr = listener_addr(&status, "http").expect("http is bound");
    assert_ne!(addr.port(), port, "http bound its own address: {status}");
    assert_eq!(get(addr).expect("GET").pid, pid_of(&status));
    sup.wait_for(
        "the unused activated socket to be closed",
        || match TcpStream::connect_timeout(&activated, Duration::from_secs(2)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    );
    assert_eq!(
        environ_names_with(pid_of(&status), SUPERVISOR_VARS),
        Vec::<String>::new()
    );
}

#[test]
fn socket_activation_refuses_a_datagram_socket_for_a_tcp_listener() {
    let env = Env::new();
    let (sup, ports) = activated(&env, 1, "http", &["--datagram"], bin!("lb-http"));
    let port = ports[0];
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    client
        .send_to(b"wake up", ("127.0.0.1", port))
        .expect("send a datagram");
    assert_eq!(sup.wait_code(), 1, "{}", sup.logs());
    let expected = "littleboss: lbhttp: listener http: the socket systemd passed as \"http\" \
                    is a datagram socket, but the listener is tcp";
    assert!(sup.stderr().contains(expected), "{}", sup.logs());
    assert!(
        !env.socket("lbhttp").exists(),
        "no control socket is left behind"
    );
}

#[test]
fn socket_activation_with_two_sockets_adopts_one_and_closes_the_other() {
    let env = Env::new();
    let (sup, ports) = activated(&env, 2, "http:other", &[], bin!("lb-http"));
    let listen: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let addr: SocketAddr = listen[0].parse().expect("an address");
    let answer = first_get(addr);
    let status = sup.wait_running();
    assert_eq!(answer.pid, pid_of(&status));
    assert_eq!(status["listeners"]["http"], format!("tcp:{}", listen[0]));
    sup.wait_for_log(
        "littleboss: lbhttp: systemd passed a socket named \"other\" that no listener declares; closed it",
    );
    let other: SocketAddr = listen[1].parse().expect("an address");
    sup.wait_for(
        "the unused activated socket to be closed",
        || match TcpStream::connect_timeout(&other, Duration::from_secs(2)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    );
}

#[test]
fn socket_activation_adopts_a_unix_socket() {
    let env = Env::new();
    let path = env.path().join("api.sock");
    let argv = activate_argv_with(&[path.display().to_string()], "api", &[], bin!("lb-unix"));
    let sup = supervise(&env, &argv, bin!("lb-unix"));
    sup.wait_for_log(&format!("Listening on {}", path.display()));
    // The first connection starts everything; the child answers it.
    let stream = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let line = littleboss_tests::systemd_support::read_all(&stream, "the activated unix socket")
        .expect("an answer");
    let status = sup.wait_running();
    let child = pid_of(&status);
    assert_eq!(Answer::parse(&line).map(|a| a.pid), Some(child), "{line:?}");
    assert_eq!(
        status["listeners"]["api"],
        format!("unix:{}", path.display())
    );
    assert_eq!(
        environ_names_with(child, SUPERVISOR_VARS),
        Vec::<String>::new()
    );
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    // The file is systemd's (it made it, and removes it with the .socket unit).
    assert!(
        path.exists(),
        "an adopted socket's file is left to systemd: {}",
        path.display()
    );
}

#[test]
fn listen_variables_meant_for_another_process_are_ignored_and_removed() {
    let env = Env::new();
    // LISTEN_PID names another process: these variables were not for the supervisor.
    let argv = [
        "env".to_string(),
        "LISTEN_FDS=1".to_string(),
        "LISTEN_PID=1".to_string(),
        "LISTEN_FDNAMES=http".to_string(),
        bin!("lb-http").display().to_string(),
        "--littleboss=start".to_string(),
    ];
    let sup = supervise_running(&env, &argv, bin!("lb-http"));
    let child = sup.child_pid();
    assert_eq!(get(sup.addr("http")).expect("GET").pid, child);
    assert_eq!(
        environ_names_with(child, SUPERVISOR_VARS),
        Vec::<String>::new()
    );
    assert!(!sup.stderr().contains("systemd passed"), "{}", sup.logs());
}

/// `env NOTIFY_SOCKET=... lb-http --littleboss=start ARGS`, running.
fn start_notified<'e>(
    env: &'e Env,
    notify: &NotifyReceiver,
    args: &[&str],
) -> littleboss_tests::Supervisor<'e> {
    let mut argv = vec![
        "env".to_string(),
        notify.env_assignment(),
        bin!("lb-http").display().to_string(),
        "--littleboss=start".to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    supervise_running(env, &argv, bin!("lb-http"))
}

/// Checks a `RELOADING=1` message: its fields, and a `MONOTONIC_USEC` between `before`
/// and now.
fn assert_reloading(message: &str, before: u64) {
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 3, "{message:?}");
    assert_eq!(lines[0], "RELOADING=1", "{message:?}");
    let usec: u64 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {message:?}"));
    let after = monotonic_usec();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC={usec} is not between {before} and {after}"
    );
    assert_eq!(lines[2], "STATUS=reloading", "{message:?}");
}

#[test]
fn notify_reports_ready_reloading_and_stopping() {
    let env = Env::new();
    let notify = NotifyReceiver::bind_path(&env.path().join("notify.sock"));
    let sup = start_notified(&env, &notify, &[]);
    let first = sup.child_pid();
    let path = bin!("lb-http").display().to_string();
    assert_eq!(
        notify.recv("the first child's readiness"),
        format!("READY=1\nSTATUS=serving: child pid {first} ({path})")
    );
    assert_eq!(
        environ_names_with(first, SUPERVISOR_VARS),
        Vec::<String>::new(),
        "the child does not see NOTIFY_SOCKET"
    );

    // A reload that succeeds.
    let copy = env.copy_binary(bin!("lb-http"), "lb-http-2");
    let before = monotonic_usec();
    let reload = env.run(&copy, &["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    assert_reloading(&notify.recv("RELOADING=1 of the reload"), before);
    let second = sup.child_pid();
    assert_ne!(second, first);
    assert_eq!(
        notify.recv("READY=1 after the reload"),
        format!(
            "READY=1\nSTATUS=serving: child pid {second} ({})",
            copy.display()
        )
    );

    // A reload that fails and rolls back: systemd hears READY=1 too.
    let before = monotonic_usec();
    let failed = env.run(&copy, &["--littleboss=reload", "--", "--exit-at-start"]);
    assert_eq!(failed.code(), Some(1), "{failed}");
    assert_reloading(&notify.recv("RELOADING=1 of the failing reload"), before);
    assert_eq!(
        notify.recv("READY=1 after the failed reload"),
        format!(
            "READY=1\nSTATUS=reload failed; serving: child pid {second} ({})",
            copy.display()
        )
    );
    assert_eq!(sup.child_pid(), second, "the old child still serves");

    // SIGHUP reloads as well.
    let before = monotonic_usec();
    sup.signal(Signal::HUP);
    assert_reloading(&notify.recv("RELOADING=1 after SIGHUP"), before);
    let ready = notify.recv("READY=1 after SIGHUP");
    let third = pid_of(&sup.status());
    assert_ne!(third, second);
    assert_eq!(
        ready,
        format!(
            "READY=1\nSTATUS=serving: child pid {third} ({})",
            copy.display()
        )
    );
    assert_eq!(
        environ_names_with(third, SUPERVISOR_VARS),
        Vec::<String>::new()
    );

    // An upgrade: RELOADING=1, then READY=1 only once the supervisor runs the new
    // binary, from the same (main) pid.
    let before = monotonic_usec();
    let upgrade = env.run(bin!("lb-http"), &["--littleboss=upgrade"]);
    assert_eq!(upgrade.code(), Some(0), "{upgrade}");
    assert_reloading(&notify.recv("RELOADING=1 of the upgrade"), before);
    let fourth = pid_of(&sup.status());
    assert_eq!(
        notify.recv("READY=1 after the upgrade"),
        format!(
            "READY=1\nSTATUS=serving: child pid {fourth} ({})",
            bin!("lb-http").display()
        )
    );
    assert_eq!(sup.status()["supervisor_pid"], sup.pid());
    assert_eq!(notify.drain(), Vec::<String>::new(), "one READY=1");

    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(notify.recv("STOPPING=1"), "STOPPING=1\nSTATUS=stopping");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    assert_eq!(
        notify.drain(),
        Vec::<String>::new(),
        "nothing after STOPPING=1"
    );
}

#[test]
fn notify_to_an_abstract_socket() {
    let env = Env::new();
    let name = format!(
        "lbtest-notify-{}-{}",
        std::process::id(),
        env.path().file_name().expect("a name").to_string_lossy()
    );
    let notify = NotifyReceiver::bind_abstract(&name);
    let sup = start_notified(&env, &notify, &[]);
    let child = sup.child_pid();
    assert_eq!(
        notify.recv("READY=1"),
        format!(
            "READY=1\nSTATUS=serving: child pid {child} ({})",
            bin!("lb-http").display()
        )
    );
    assert_eq!(
        environ_names_with(child, SUPERVISOR_VARS),
        Vec::<String>::new()
    );
    sup.signal(Signal::TERM);
    assert_eq!(notify.recv("STOPPING=1"), "STOPPING=1\nSTATUS=stopping");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
}

/// `systemd-analyze verify` on copies of the unit files, `ExecStart` pointed at a real
/// binary.
#[test]
fn example_unit_files_verify() {
    let analyze = systemd_tool("systemd-analyze");
    let env = Env::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/systemd");
    let units = env.path().join("units");
    std::fs::create_dir(&units).expect("create the units directory");
    let service = std::fs::read_to_string(source.join("myblog.service")).expect("the service");
    let exec = "ExecStart=/usr/local/bin/myblog --littleboss=start";
    assert!(service.contains(exec), "{service}");
    let service = service.replace(
        exec,
        &format!("ExecStart={} --littleboss=start", bin!("lb-http").display()),
    );
    std::fs::write(units.join("myblog.service"), service).expect("write the service");
    std::fs::copy(source.join("myblog.socket"), units.join("myblog.socket"))
        .expect("copy the socket unit");
    let outcome = env.run(
        &analyze,
        &[
            "verify",
            "--man=no",
            units.join("myblog.socket").to_str().expect("UTF-8"),
            units.join("myblog.service").to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(outcome.code(), Some(0), "{outcome}");
    // systemd before 253 does not know Type=notify-reload; everything else must parse.
    let version: u32 = env
        .run(&analyze, &["--version"])
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let complaints: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|line| line.contains("myblog"))
        .filter(|line| {
            !(version < 253
                && line.ends_with("Failed to parse service type, ignoring: notify-reload"))
        })
        .collect();
    if version < 253 {
        eprintln!(
            "note: systemd {version} predates Type=notify-reload (253); that line is allowed"
        );
    }
    assert_eq!(complaints, Vec::<&str>::new(), "{outcome}");
}

/// Runs a supervisor through a start, a reload, a failed reload and a stop, and returns
/// its stdout and stderr.
fn quiet_lifecycle(extra: &[&str]) -> (String, String, u32, u32) {
    let env = Env::new();
    let sup = env.start(bin!("lb-log-fn"), extra);
    let first = sup.child_pid();
    let addr = sup.addr("http");
    assert_eq!(
        Answer::parse(&tcp_line(addr).expect("an answer")).map(|a| a.pid),
        Some(first)
    );
    let reload = sup.run(&["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    let second = sup.child_pid();
    let failed = sup.run(&["--littleboss=reload", "--", "--exit-at-start"]);
    assert_eq!(failed.code(), Some(1), "{failed}");
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    (sup.stdout(), sup.stderr(), first, second)
}

#[test]
fn log_with_a_no_op_silences_the_supervisor() {
    let (stdout, stderr, _, _) = quiet_lifecycle(&[]);
    let noisy: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|line| line.contains("littleboss:") || line.starts_with("LOG "))
        .collect();
    assert_eq!(
        noisy,
        Vec::<&str>::new(),
        "stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(
        stderr.contains("lb-log-fn: pid"),
        "the program's own lines still show:\n{stderr}"
    );
}

#[test]
fn log_with_a_function_gets_every_message() {
    let (stdout, stderr, first, second) = quiet_lifecycle(&["--log-to-stdout"]);
    assert!(
        !stderr.lines().any(|line| line.contains("littleboss:")),
        "no littleboss line on stderr:\n{stderr}"
    );
    let expect = |line: &str| {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "no line starting with {line:?} on stdout:\n{stdout}"
        );
    };
    expect("LOG Info lbsdquiet: supervisor pid ");
    expect(&format!("LOG Info lbsdquiet: child pid {first} is ready"));
    expect(&format!(
        "LOG Info lbsdquiet: reloaded: pid {first} -> {second} in "
    ));
    expect("LOG Warn lbsdquiet: reload failed: new child pid ");
    expect("LOG Info lbsdquiet: stopped, exit code 0");
}

/// A reload on probation: after `RELOADING=1`, `EXTEND_TIMEOUT_USEC` covers the
/// probation, and `READY=1` comes with the verdict, not when the new child is ready.
#[test]
fn notify_waits_for_a_probation_s_verdict() {
    let env = Env::new();
    let notify = NotifyReceiver::bind_path(&env.path().join("notify.sock"));
    let bin = bin!("lb-probation");
    let argv = [
        "env".to_string(),
        notify.env_assignment(),
        bin.display().to_string(),
        "--littleboss=start".to_string(),
    ];
    let sup = supervise_running(&env, &argv, bin);
    let first = sup.child_pid();
    assert!(
        notify
            .recv("the first child's readiness")
            .starts_with("READY=1\n")
    );
    // It passes once its 1.5 s are up.
    let before = monotonic_usec();
    let reload = env.spawn(bin, &["--littleboss=reload", "--", "--probation-ms=1500"]);
    assert_reloading(&notify.recv("RELOADING=1 of the reload"), before);
    assert_eq!(
        notify.recv("the probation's extension"),
        "EXTEND_TIMEOUT_USEC=11500000\nSTATUS=reloaded; the new child is on probation"
    );
    let ready = notify.recv("READY=1 with the verdict");
    let passed = monotonic_usec();
    assert!(
        passed - before >= 1_400_000,
        "READY=1 came {} ms after the reload, before the verdict",
        (passed - before) / 1000
    );
    assert_eq!(reload.wait_code(), 0);
    let second = sup.child_pid();
    assert_ne!(second, first);
    assert!(ready.starts_with(&format!("READY=1\nSTATUS=serving: child pid {second} ")));
    // A rollback: READY=1 names the old child, serving again.
    let reload = env.spawn(
        bin,
        &[
            "--littleboss=reload",
            "--",
            "--probation-ms=60000",
            "--crash-after-ms=300",
        ],
    );
    notify.recv("RELOADING=1 of the second reload");
    notify.recv("the second probation's extension");
    let ready = notify.recv("READY=1 after the rollback");
    assert!(
        ready.starts_with(&format!("READY=1\nSTATUS=serving: child pid {second} ")),
        "{ready:?}"
    );
    assert_eq!(reload.wait_code(), 1);
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
}
