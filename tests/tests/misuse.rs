//! Misuse: a busy port, an address that does not parse, a control directory that cannot
//! be written, a second `start` beside a running supervisor, and a listener asked for
//! by a wrong name.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;

use littleboss_tests::attack_support::Serving;
use littleboss_tests::{COMMAND_TIMEOUT, Env, NO_ARGS, bin, run_for, runnable_by_nobody};

/// The service name of `lb-http`.
const NAME: &str = "lbhttp";

/// A `main` that returns the `io::Error` of a wrong listener name prints its text, not
/// its `Debug` form (`Custom { kind: NotFound, error: ... }`).
#[test]
fn an_io_error_from_main_is_printed_with_its_text() {
    let env = Env::new();
    let outcome = env.run(bin!("lb-http"), &["--take-listener=htp"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("Error: no listener named \"htp\"; the declared listeners are http, spare"),
        "{outcome}"
    );
    assert!(!outcome.stderr.contains("Custom {"), "{outcome}");
}

#[test]
fn a_busy_port_fails_start_and_leaves_no_socket() {
    let env = Env::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("its address");
    let outcome = env.run(
        bin!("lb-http"),
        &["--littleboss=start", &format!("--http={addr}")],
    );
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "bind http on {addr}: address in use; to bind another address, pass --http=ADDR"
        )),
        "{outcome}"
    );
    assert!(!env.socket(NAME).exists(), "no socket file is left behind");
    // The port's owner is untouched.
    assert_eq!(busy.local_addr().expect("still bound"), addr);
}

#[test]
fn an_address_that_does_not_parse_is_a_usage_error() {
    let env = Env::new();
    for args in [
        &["--littleboss=start", "--http=nonsense"][..],
        &["--http=nonsense"],
        &["--littleboss=start", "--http=127.0.0.1:99999"],
    ] {
        let outcome = env.run(bin!("lb-http"), args);
        assert_eq!(outcome.code(), Some(2), "{args:?}: {outcome}");
        assert!(
            outcome.stderr.contains("littleboss: flag --http: "),
            "{args:?} names the flag: {outcome}"
        );
        let value = args[args.len() - 1].trim_start_matches("--http=");
        assert!(
            outcome.stderr.contains(value),
            "{args:?} names the value: {outcome}"
        );
        assert!(!env.socket(NAME).exists(), "{args:?} made a socket");
    }
}

#[test]
fn a_control_dir_under_a_file_is_refused() {
    let env = Env::new();
    let file = env.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let dir = file.join("run");
    let mut start = env.command(bin!("lb-http"));
    start.env("LITTLEBOSS_DIR", &dir).arg("--littleboss=start");
    let outcome = run_for(start, COMMAND_TIMEOUT);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "cannot create the control directory {}: not a directory (set LITTLEBOSS_DIR to a directory you own)",
            dir.display()
        )),
        "{outcome}"
    );
}

#[test]
fn a_read_only_control_dir_is_refused() {
    let env = Env::new();
    std::fs::create_dir(env.dir()).expect("mkdir");
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o500)).expect("chmod");
    let root = rustix::process::geteuid().is_root();
    if root {
        // Root writes anywhere: run the start as uid 65534, the directory's owner.
        eprintln!("a_read_only_control_dir_is_refused: as root, runs the start as uid 65534");
        std::os::unix::fs::chown(env.dir(), Some(65534), Some(65534)).expect("chown");
        std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    // Run as uid 65534, the binary must be executable by it wherever the tree is.
    let bin = if root {
        runnable_by_nobody(bin!("lb-http"), env.path())
    } else {
        bin!("lb-http").to_path_buf()
    };
    let mut start = env.command(&bin);
    start.arg("--littleboss=start");
    if root {
        start.uid(65534).gid(65534);
    }
    let outcome = run_for(start, COMMAND_TIMEOUT);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    let lock = env.lock(NAME);
    assert!(
        outcome.stderr.contains(&format!(
            "cannot open {}: Permission denied",
            lock.display()
        )),
        "{outcome}"
    );
    assert!(!env.socket(NAME).exists());
}

/// A port below 1024, refused to a user who may not bind it, says what it takes (run
/// as uid 65534 where the test runs as root).
#[test]
fn a_privileged_port_says_it_needs_root_or_a_user() {
    let start_port: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1024);
    if start_port <= 1 {
        eprintln!(
            "a_privileged_port_says_it_needs_root_or_a_user: SKIPPED: this machine lets anyone bind any port (net.ipv4.ip_unprivileged_port_start = {start_port})"
        );
        return;
    }
    let env = Env::new();
    let root = rustix::process::geteuid().is_root();
    let bin = if root {
        // Root may bind it: run the start as uid 65534, in a directory of its own.
        std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::create_dir(env.dir()).expect("mkdir");
        std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(env.dir(), Some(65534), Some(65534)).expect("chown");
        runnable_by_nobody(bin!("lb-http"), env.path())
    } else {
        bin!("lb-http").to_path_buf()
    };
    let mut start = env.command(&bin);
    start.args(["--littleboss=start", "--http=127.0.0.1:1"]);
    if root {
        start.uid(65534).gid(65534);
    }
    let outcome = run_for(start, COMMAND_TIMEOUT);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains(
            "bind http on 127.0.0.1:1: permission denied; port 1 is below 1024, which only root (or CAP_NET_BIND_SERVICE) may bind: start the supervisor as root, with user = \"...\" so that its children run as that user; to bind another address, pass --http=ADDR"
        ),
        "{outcome}"
    );
    assert!(!env.socket(NAME).exists());
}

#[test]
fn a_second_start_is_refused_and_leaves_the_first_alone() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    let inode = std::fs::metadata(&serving.socket)
        .expect("the socket")
        .ino();
    for args in [
        &["--littleboss=start", "--http=127.0.0.1:0"][..],
        &["--littleboss=start", &format!("--http={}", serving.addr)],
        &["--littleboss=start"],
    ] {
        let second = env.run(bin!("lb-http"), args);
        assert_eq!(second.code(), Some(1), "{args:?}: {second}");
        assert!(
            second.stderr.contains(&format!(
                "already running (supervisor pid {}); stop it with --littleboss=stop or reload it with --littleboss=reload",
                sup.pid()
            )),
            "{args:?}: {second}"
        );
        let now = std::fs::metadata(&serving.socket).expect("the socket is still there");
        assert_eq!(now.ino(), inode, "the socket file was replaced");
        serving.assert_unchanged(&sup, &format!("a second start {args:?}"));
    }
    assert_eq!(sup.status()["supervisor_pid"], sup.pid());
}
