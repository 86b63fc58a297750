//! `unix:` listeners (`lb-unix`): served through the supervisor's socket, shown in
//! the status, created with `unix_mode`, removed with the listener; stale files are
//! replaced and live ones refused; abstract names; reloads. And the listener accessors:
//! tokio ones give non-blocking sockets, `std_` ones blocking sockets.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::Path;

use littleboss_tests::systemd_support::{read_all, tcp_line};
use littleboss_tests::{Answer, Env, Spawned, bin, listener_addr, wait_gone};

/// Connects to the socket file at `path` and parses the line it answers with.
fn ask_path(path: &Path) -> std::io::Result<Answer> {
    let stream = UnixStream::connect(path)?;
    answer_of(stream, &path.display().to_string())
}

/// Connects to `@name` in the abstract namespace and parses the line it answers with.
fn ask_abstract(name: &str) -> std::io::Result<Answer> {
    let addr = UnixAddr::from_abstract_name(name.as_bytes())?;
    let stream = UnixStream::connect_addr(&addr)?;
    answer_of(stream, &format!("@{name}"))
}

fn answer_of(stream: UnixStream, what: &str) -> std::io::Result<Answer> {
    stream.set_read_timeout(Some(littleboss_tests::HTTP_TIMEOUT))?;
    let line = read_all(stream, what)?;
    Answer::parse(&line).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected answer from {what}: {line:?}"),
        )
    })
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn inode_of(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

#[test]
fn serves_through_a_unix_listener_with_its_mode_and_removes_it_at_stop() {
    let env = Env::new();
    let path = env.path().join("api.sock");
    let sup = env.start(bin!("lb-unix"), &[format!("--api={}", path.display())]);
    let child = sup.child_pid();
    let status = sup.status();
    assert_eq!(
        status["listeners"]["api"],
        format!("unix:{}", path.display())
    );
    let answer = ask_path(&path).expect("an answer on the unix socket");
    assert_eq!(answer.pid, child);
    assert_eq!(answer.mode, "supervised");
    let tcp = listener_addr(&status, "http").expect("http is bound");
    let answer = Answer::parse(&tcp_line(tcp).expect("an answer over TCP"));
    assert_eq!(answer.map(|a| a.pid), Some(child));
    assert!(
        std::os::unix::fs::FileTypeExt::is_socket(
            &std::fs::symlink_metadata(&path).expect("stat").file_type()
        ),
        "{} is a socket",
        path.display()
    );
    assert_eq!(mode_of(&path), 0o660, "unix_mode = \"0660\"");

    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    wait_gone(child, "the child");
    assert!(!path.exists(), "stop removes {}", path.display());
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let env = Env::new();
    let path = env.path().join("api.sock");
    // A process that died without cleaning up: the file stays, nobody answers.
    drop(UnixListener::bind(&path).expect("bind the stale socket"));
    assert!(
        UnixStream::connect(&path).is_err(),
        "nobody answers on the stale file"
    );
    let sup = env.start(bin!("lb-unix"), &[format!("--api={}", path.display())]);
    let child = sup.child_pid();
    // (Its inode number may be the stale file's again: tmpfs reuses them.)
    assert_eq!(ask_path(&path).expect("an answer").pid, child);
    assert_eq!(mode_of(&path), 0o660);
}

#[test]
fn a_socket_a_live_process_answers_on_is_refused() {
    let env = Env::new();
    let path = env.path().join("api.sock");
    let live = UnixListener::bind(&path).expect("bind the live socket");
    let inode = inode_of(&path);
    let sup = env.start_nowait(bin!("lb-unix"), &[format!("--api={}", path.display())]);
    assert_eq!(sup.wait_code(), 1, "{}", sup.logs());
    let expected = format!(
        "littleboss: lbsdunix: bind api on {}: a live process answers on that socket",
        path.display()
    );
    assert!(sup.stderr().contains(&expected), "{}", sup.logs());
    assert_eq!(
        inode_of(&path),
        inode,
        "the live process's file is untouched"
    );
    // And it still works: a client reaches the live listener.
    let _client = UnixStream::connect(&path).expect("connect to the live socket");
    live.set_nonblocking(false).expect("blocking");
    let (_accepted, _) = live.accept().expect("the live listener accepts");
    assert!(!env.socket("lbsdunix").exists(), "no control socket left");
}

#[test]
fn an_abstract_unix_listener() {
    let env = Env::new();
    let name = format!(
        "lbtest-api-{}-{}",
        std::process::id(),
        env.path().file_name().expect("a name").to_string_lossy()
    );
    let sup = env.start(bin!("lb-unix"), &[format!("--api=@{name}")]);
    let child = sup.child_pid();
    assert_eq!(sup.status()["listeners"]["api"], format!("unix:@{name}"));
    assert_eq!(ask_abstract(&name).expect("an answer").pid, child);
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    assert!(
        ask_abstract(&name).is_err(),
        "nobody answers on @{name} after the stop"
    );
}

#[test]
fn a_reload_keeps_the_unix_listener() {
    let env = Env::new();
    let path = env.path().join("api.sock");
    let sup = env.start(bin!("lb-unix"), &[format!("--api={}", path.display())]);
    let old = sup.child_pid();
    let inode = inode_of(&path);
    assert_eq!(ask_path(&path).expect("an answer").pid, old);
    let copy = env.copy_binary(bin!("lb-unix"), "lb-unix-2");
    let reload = env.run(&copy, &["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    let new = sup.child_pid();
    assert_ne!(new, old);
    sup.wait_for("the new child to answer on the same path", || {
        ask_path(&path).ok().filter(|a| a.pid == new)
    });
    wait_gone(old, "the old child");
    assert_eq!(ask_path(&path).expect("an answer").pid, new);
    assert_eq!(inode_of(&path), inode, "the same socket file");
    assert_eq!(
        sup.status()["listeners"]["api"],
        format!("unix:{}", path.display())
    );
}

#[test]
fn a_reload_that_moves_the_unix_listener_removes_the_old_file() {
    let env = Env::new();
    let first = env.path().join("api-1.sock");
    let second = env.path().join("api-2.sock");
    let sup = env.start(bin!("lb-unix"), &[format!("--api={}", first.display())]);
    let old = sup.child_pid();
    let reload = sup.run(&[
        "--littleboss=reload".to_string(),
        format!("--api={}", second.display()),
    ]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    let new = sup.child_pid();
    assert_eq!(
        ask_path(&second).expect("an answer on the new path").pid,
        new
    );
    assert_eq!(mode_of(&second), 0o660);
    wait_gone(old, "the old child");
    sup.wait_for("the old socket file to be removed", || {
        (!first.exists()).then_some(())
    });
    assert_eq!(
        sup.status()["listeners"]["api"],
        format!("unix:{}", second.display())
    );
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    assert!(!second.exists(), "stop removes {}", second.display());
}

/// The `nonblocking=` lines `lb-accessors` printed, as `(accessor, value)`.
fn accessor_report(process: &Spawned, pid: u32) -> Vec<(String, String)> {
    process.wait_for_log(&format!("lb-accessors: pid {pid} reported"));
    let prefix = format!("lb-accessors: pid {pid} ");
    process
        .stderr()
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter(|rest| *rest != "reported")
        .map(|rest| match rest.split_once(" nonblocking=") {
            Some((accessor, value)) => (accessor.to_string(), value.to_string()),
            None => (rest.to_string(), "?".to_string()),
        })
        .collect()
}

fn expected_report() -> Vec<(String, String)> {
    [
        ("tcp_listener", "true"),
        ("std_tcp_listener", "false"),
        ("udp_socket", "true"),
        ("std_udp_socket", "false"),
        ("unix_listener", "true"),
        ("std_unix_listener", "false"),
    ]
    .map(|(a, v)| (a.to_string(), v.to_string()))
    .to_vec()
}

fn accessor_args(env: &Env) -> Vec<String> {
    vec![
        format!("--unix_a={}", env.path().join("a.sock").display()),
        format!("--unix_b={}", env.path().join("b.sock").display()),
    ]
}

#[test]
fn accessors_give_nonblocking_tokio_and_blocking_std_sockets_supervised() {
    let env = Env::new();
    let sup = env.start(bin!("lb-accessors"), &accessor_args(&env));
    let child = sup.child_pid();
    assert_eq!(
        accessor_report(&sup, child),
        expected_report(),
        "{}",
        sup.logs()
    );
}

#[test]
fn accessors_give_nonblocking_tokio_and_blocking_std_sockets_bypassed() {
    let env = Env::new();
    let process = env.spawn(bin!("lb-accessors"), &accessor_args(&env));
    assert_eq!(
        accessor_report(&process, process.pid()),
        expected_report(),
        "{}",
        process.logs()
    );
    process.signal(littleboss_tests::Signal::TERM);
    assert_eq!(process.wait_code(), 0, "{}", process.logs());
}
