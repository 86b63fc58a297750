//! Running plainly (bypass), `--littleboss=start`, `--littleboss=stop`, and a child that
//! exits on its own.

use littleboss_tests::{
    Env, NO_ARGS, Signal, bin, children_of, get, is_alive, is_gone, listener_addr, program_args,
    wait_gone,
};

#[test]
fn bypass_serves_directly_without_a_child() {
    let env = Env::new();
    let process = env.spawn(bin!("lb-http"), NO_ARGS);
    let addr = process.wait_serving(process.pid(), "http");
    let answer = get(addr).expect("GET in bypass mode");
    assert_eq!(
        answer.pid,
        process.pid(),
        "the spawned process itself answers"
    );
    assert_eq!(answer.mode, "bypass");
    assert_eq!(
        children_of(process.pid()),
        Vec::<u32>::new(),
        "bypass mode starts no child"
    );
    assert!(
        !env.socket("lbhttp").exists(),
        "bypass mode creates no control socket"
    );
}

#[test]
fn bypass_sigterm_winds_down_and_exits_zero() {
    let env = Env::new();
    let process = env.spawn(bin!("lb-http"), NO_ARGS);
    let addr = process.wait_serving(process.pid(), "http");
    get(addr).expect("GET in bypass mode");
    process.signal(Signal::TERM);
    assert_eq!(process.wait_code(), 0, "{}", process.logs());
    assert!(
        process.stderr().contains("wound down"),
        "it returned through lameduck:\n{}",
        process.logs()
    );
}

#[test]
fn bypass_sigint_passes_the_programs_exit_code() {
    let env = Env::new();
    let process = env.spawn(bin!("lb-http"), &["--exit-code=5"]);
    process.wait_serving(process.pid(), "http");
    process.signal(Signal::INT);
    assert_eq!(process.wait_code(), 5, "{}", process.logs());
}

#[test]
fn start_runs_a_child_that_holds_no_own_listener() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let status = sup.status();
    assert_eq!(status["name"], "lbhttp");
    assert_eq!(status["protocol"], littleboss::PROTOCOL);
    assert_eq!(status["state"], "running");
    assert_eq!(status["supervisor_pid"], sup.pid());
    let child = sup.child_pid();
    assert_ne!(child, sup.pid());
    assert!(is_alive(sup.pid()) && is_alive(child));
    assert_eq!(children_of(sup.pid()), vec![child]);
    assert_eq!(
        status["child_path"],
        bin!("lb-http").to_str().expect("UTF-8 path")
    );
    assert_eq!(status["reloads"], 0);
    assert_eq!(status["failures"], 0);
    assert_eq!(status["restarts"], 0);
    assert!(status["previous_path"].is_null());
    assert!(status["supervisor_started"].is_string(), "{status}");
    assert!(status["child_started"].is_string(), "{status}");
    assert_eq!(
        program_args(&status),
        [bin!("lb-http").to_str().expect("UTF-8 path")]
    );
    assert_eq!(status["listeners"]["spare"], "off");
    let addr = listener_addr(&status, "http").expect("http is bound");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{status}");
    assert!(env.socket("lbhttp").exists());
    assert!(env.lock("lbhttp").exists());
}

#[test]
fn start_serves_through_the_passed_listener() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let child = sup.child_pid();
    let answer = get(sup.addr("http")).expect("GET through the supervisor's listener");
    assert_eq!(answer.pid, child);
    assert_eq!(answer.mode, "supervised");
    assert_eq!(answer.exe, bin!("lb-http").to_str().expect("UTF-8 path"));
}

#[test]
fn start_accepts_every_spelling_of_the_flag() {
    for spelling in [&["-littleboss=start"][..], &["--littleboss", "start"]] {
        let env = Env::new();
        let sup = env.spawn(bin!("lb-http"), spelling);
        let status = sup.wait_for(&format!("status after {spelling:?}"), || {
            env.try_status_json(bin!("lb-http"))
                .ok()
                .filter(|s| s["state"] == "running")
        });
        assert_eq!(status["supervisor_pid"], sup.pid(), "{spelling:?}");
        sup.track(u32::try_from(status["child_pid"].as_u64().expect("child")).expect("pid"));
    }
}

#[test]
fn stop_exits_zero_prints_two_lines_and_cleans_up() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let child = sup.child_pid();
    let addr = sup.addr("http");
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(
        stop.stdout, "stopping lbhttp\nstopped lbhttp exit code 0\n",
        "{stop}"
    );
    assert_eq!(sup.wait_code(), 0, "the supervisor's own exit code");
    assert!(!env.socket("lbhttp").exists(), "the socket is removed");
    assert!(env.lock("lbhttp").exists(), "the lock file stays");
    assert!(is_gone(child), "the child is gone");
    assert_eq!(children_of(sup.pid()), Vec::<u32>::new());
    assert!(get(addr).is_err(), "nothing serves any more");
}

#[test]
fn stop_passes_on_the_childs_exit_code() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), &["--exit-code=7"]);
    let child = sup.child_pid();
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(7), "{stop}");
    assert_eq!(
        stop.stdout, "stopping lbhttp\nstopped lbhttp exit code 7\n",
        "{stop}"
    );
    assert_eq!(sup.wait_code(), 7);
    assert!(is_gone(child));
    assert!(!env.socket("lbhttp").exists());
}

#[test]
fn stop_kills_a_child_that_ignores_lameduck() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), &["--ignore-lameduck"]);
    let child = sup.child_pid();
    let stop = sup.run(&["--littleboss=stop"]);
    // Killed by SIGKILL after its 2 s lameduck: a signal counts as exit code 1.
    assert_eq!(stop.code(), Some(1), "{stop}");
    assert!(
        stop.stdout.ends_with("stopped lbhttp exit code 1\n"),
        "{stop}"
    );
    assert_eq!(sup.wait_code(), 1);
    assert!(is_gone(child));
}

#[test]
fn child_exiting_on_its_own_ends_the_supervisor_with_its_code() {
    let env = Env::new();
    let sup = env.start_nowait(bin!("lb-http"), &["--crash-after-ms=300"]);
    assert_eq!(sup.wait_code(), 4, "{}", sup.logs());
    assert!(!env.socket("lbhttp").exists(), "the socket is removed");
    assert_eq!(children_of(sup.pid()), Vec::<u32>::new());
    let status = env.run(bin!("lb-http"), &["--littleboss=status"]);
    assert_eq!(status.code(), Some(1), "{status}");
}

#[test]
fn child_exiting_before_ready_ends_the_supervisor_with_its_code() {
    let env = Env::new();
    let sup = env.start_nowait(bin!("lb-http"), &["--exit-at-start"]);
    assert_eq!(sup.wait_code(), 3, "{}", sup.logs());
    assert!(!env.socket("lbhttp").exists(), "the socket is removed");
}

/// `start` is the supervisor in the foreground: the reason it prints quotes the
/// child's panic, where and why.
#[test]
fn a_child_panicking_at_start_is_quoted_by_start() {
    let env = Env::new();
    let sup = env.start_nowait(bin!("lb-http"), &["--panic-at-start"]);
    assert_eq!(sup.wait_code(), 101, "{}", sup.logs());
    let logs = sup.logs();
    let quoted = logs.lines().any(|line| {
        line.starts_with("littleboss: lbhttp: child pid ")
            && line.contains(" exited with code 101 after ")
            && line.contains("(its main panicked at tests/src/bin/lb-http.rs:")
            && line.ends_with(": lb-http: told to panic at start)")
    });
    assert!(quoted, "{logs}");
}

#[test]
fn sync_main_works_supervised() {
    let env = Env::new();
    let sup = env.start(bin!("lb-sync"), NO_ARGS);
    let status = sup.status();
    assert_eq!(status["name"], "lbsync");
    let child = sup.child_pid();
    assert_ne!(child, sup.pid());
    let answer = get(sup.addr("http")).expect("GET from the sync main");
    assert_eq!(answer.pid, child);
    assert_eq!(answer.mode, "supervised");
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(stop.stdout, "stopping lbsync\nstopped lbsync exit code 0\n");
    assert_eq!(sup.wait_code(), 0);
    wait_gone(child, "the sync child");
}

#[test]
fn sync_main_works_in_bypass_mode() {
    let env = Env::new();
    let process = env.spawn(bin!("lb-sync"), NO_ARGS);
    let addr = process.wait_serving(process.pid(), "http");
    let answer = get(addr).expect("GET from the sync main");
    assert_eq!(answer.pid, process.pid());
    assert_eq!(answer.mode, "bypass");
    process.signal(Signal::TERM);
    assert_eq!(process.wait_code(), 0);
}

#[test]
fn child_that_has_not_called_ready_is_starting() {
    let env = Env::new();
    let sup = env.start_nowait(bin!("lb-http"), &["--never-ready"]);
    let child = sup.wait_for("a child in the status", || {
        sup.try_status().ok()?["child_pid"].as_u64()
    });
    // It serves (it has its listeners) but has not said it is ready.
    sup.wait_serving(u32::try_from(child).expect("a pid"), "http");
    let status = sup.status();
    assert_eq!(status["state"], "starting", "{status}");
    assert!(status["child_pid"].is_u64(), "{status}");
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0);
}

#[test]
fn child_killed_by_a_signal_ends_the_supervisor_with_code_1() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let child = sup.child_pid();
    littleboss_tests::kill(child);
    assert_eq!(sup.wait_code(), 1, "{}", sup.logs());
    assert!(!env.socket("lbhttp").exists(), "the socket is removed");
    assert!(
        sup.stderr()
            .contains(&format!("child pid {child} was killed by signal 9")),
        "{}",
        sup.logs()
    );
}

#[test]
fn start_on_a_busy_port_fails_and_leaves_no_socket() {
    let env = Env::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = busy.local_addr().expect("its address");
    let sup = env.start_nowait(bin!("lb-http"), &[format!("--http={addr}")]);
    assert_eq!(sup.wait_code(), 1, "{}", sup.logs());
    assert!(
        sup.stderr()
            .contains(&format!("littleboss: lbhttp: bind http on {addr}: ")),
        "{}",
        sup.logs()
    );
    assert!(!env.socket("lbhttp").exists());
    assert_eq!(children_of(sup.pid()), Vec::<u32>::new());
}
