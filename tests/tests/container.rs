//! As a container's entrypoint: the supervisor runs as PID 1 of a new pid namespace
//! (`unshare --pid --fork --mount-proc`), reaps the orphans the kernel hands to it, and
//! stops gracefully on SIGTERM.
//!
//! The tests need root and a working `unshare`: they are `#[ignore = "needs root and
//! unshare"]`, run on purpose with `cargo test -p littleboss-tests --test container --
//! --ignored` (`.ci/run` does), and fail, saying why, where they cannot run.
//!
//! They never ask the namespaced supervisor's status through
//! [`Supervisor`](littleboss_tests::Supervisor): the pids it reports are the
//! namespace's, which mean other processes on the host.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use littleboss_tests::systemd_support::{find_program, innermost_pid, tcp_line};
use littleboss_tests::{
    Answer, DEADLINE, Env, Outcome, POLL, Signal, Spawned, Value, bin, children_of, listener_addr,
    proc_exists, proc_state, processes_with_parent, require_root, wait_for, zombie_children,
};

/// `unshare` and `nsenter`; panics, saying why, if this test cannot run here (it needs
/// root, and a pid namespace that can be made).
fn usable_tools(env: &Env) -> (PathBuf, PathBuf) {
    require_root("make a pid namespace");
    let (Some(unshare), Some(nsenter)) = (find_program("unshare"), find_program("nsenter")) else {
        panic!("unshare or nsenter is not installed (Debian package util-linux)");
    };
    let probe = env.run(&unshare, &["--pid", "--fork", "--mount-proc", "true"]);
    assert_eq!(
        probe.code(),
        Some(0),
        "unshare cannot make a pid namespace here:\n{probe}"
    );
    (unshare, nsenter)
}

/// Starts `unshare --pid --fork --mount-proc lb-orphans --littleboss=start ARGS`:
/// the supervisor as PID 1 of a new pid namespace.
fn start_as_pid1(env: &Env, unshare: &Path, args: &[&str]) -> Spawned {
    let mut all = vec![
        "--pid",
        "--fork",
        "--mount-proc",
        bin!("lb-orphans").to_str().expect("UTF-8"),
        "--littleboss=start",
    ];
    all.extend(args);
    env.spawn(unshare, &all)
}

/// Runs `lb-orphans ARGS` inside the supervisor's pid and mount namespaces, as
/// `docker exec` would.
fn run_inside<S: AsRef<OsStr>>(env: &Env, nsenter: &Path, supervisor: u32, args: &[S]) -> Outcome {
    let mut all: Vec<OsString> = [
        "--target".into(),
        supervisor.to_string().into(),
        "--pid".into(),
        "--mount".into(),
        bin!("lb-orphans").into(),
    ]
    .to_vec();
    all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
    env.run(nsenter, &all)
}

/// The namespaced supervisor: the one child of the `unshare` process, on the host.
fn supervisor_host_pid(unshare: &Spawned) -> u32 {
    unshare.wait_for("unshare to start the supervisor", || {
        if let Some(status) = unshare.try_exit() {
            panic!("unshare exited ({status})\n{}", unshare.logs());
        }
        match children_of(unshare.pid()).as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    })
}

/// `status-json` of the namespaced supervisor (asked from inside), once it is running.
fn wait_running(env: &Env, nsenter: &Path, unshare: &Spawned, supervisor: u32) -> Value {
    unshare.wait_for("the namespaced supervisor to be running", || {
        if let Some(status) = unshare.try_exit() {
            panic!("unshare exited ({status})\n{}", unshare.logs());
        }
        let outcome = run_inside(env, nsenter, supervisor, &["--littleboss=status-json"]);
        serde_json::from_str::<Value>(&outcome.stdout)
            .ok()
            .filter(|s| s["state"] == "running" && s["child_pid"].is_u64())
    })
}

/// The host pid of the supervisor's child whose namespace pid is `ns_pid`.
fn host_pid_of_child(supervisor: u32, ns_pid: u64) -> u32 {
    processes_with_parent(supervisor)
        .into_iter()
        .find(|pid| innermost_pid(*pid).map(u64::from) == Some(ns_pid))
        .unwrap_or_else(|| panic!("no child of {supervisor} has namespace pid {ns_pid}"))
}

/// Waits until `orphans` have left `/proc` altogether (a zombie would stay) and the
/// supervisor has no zombie child.
fn wait_reaped(unshare: &Spawned, supervisor: u32, orphans: &[u32]) {
    unshare.wait_for(
        &format!("the orphans {orphans:?} to be reaped by the supervisor (pid {supervisor})"),
        || {
            let left: Vec<u32> = orphans
                .iter()
                .copied()
                .filter(|p| proc_exists(*p))
                .collect();
            (left.is_empty() && zombie_children(supervisor).is_empty()).then_some(())
        },
    );
}

/// SIGTERM to the namespaced supervisor: it stops gracefully, and `unshare` exits 0.
fn stop_with_sigterm(unshare: &Spawned, supervisor: u32, child: u32) {
    littleboss_tests::send_signal(supervisor, Signal::TERM).expect("SIGTERM the supervisor");
    assert_eq!(unshare.wait_code(), 0, "{}", unshare.logs());
    let stderr = unshare.stderr();
    for line in [
        "littleboss: lbsdorphans: SIGTERM: stopping",
        "littleboss: lbsdorphans: stopped, exit code 0",
    ] {
        assert!(stderr.contains(line), "{line:?} in\n{}", unshare.logs());
    }
    assert!(
        stderr.contains("wound down"),
        "the child wound down through lameduck:\n{}",
        unshare.logs()
    );
    wait_for(DEADLINE, "the supervisor and its child to be gone", || {
        (!proc_exists(supervisor) && !proc_exists(child)).then_some(())
    });
}

#[test]
#[ignore = "needs root and unshare"]
fn pid1_reaps_orphans_reparented_to_it_and_stops_on_sigterm() {
    let env = Env::new();
    let (unshare, nsenter) = usable_tools(&env);
    let release = env.path().join("release-1");
    let release_arg = format!("--release={}", release.display());
    let process = start_as_pid1(&env, &unshare, &["--orphans=3", &release_arg]);
    let supervisor = supervisor_host_pid(&process);
    let status = wait_running(&env, &nsenter, &process, supervisor);
    assert_eq!(
        status["supervisor_pid"], 1,
        "the supervisor is PID 1: {status}"
    );
    let ns_child = status["child_pid"].as_u64().expect("a child");
    let child = host_pid_of_child(supervisor, ns_child);
    process.wait_for_log("made 3 orphans");

    // The grandchildren wait for their release file, children of the supervisor now.
    let orphans = process.wait_for("3 orphans reparented to the supervisor", || {
        let orphans: Vec<u32> = processes_with_parent(supervisor)
            .into_iter()
            .filter(|pid| *pid != child)
            .collect();
        (orphans.len() == 3).then_some(orphans)
    });
    let addr = listener_addr(&status, "http").expect("http is bound");
    let answer = Answer::parse(&tcp_line(addr).expect("an answer from the namespace"));
    assert_eq!(answer.map(|a| a.pid as u64), Some(ns_child));

    std::fs::write(&release, b"").expect("release the orphans");
    wait_reaped(&process, supervisor, &orphans);
    assert!(proc_exists(child), "the supervisor's own child still runs");

    // Asked again: a reload whose new child makes more orphans.
    let release = env.path().join("release-2");
    let reload = run_inside(
        &env,
        &nsenter,
        supervisor,
        &[
            "--littleboss=reload".to_string(),
            "--".to_string(),
            "--orphans=2".to_string(),
            format!("--release={}", release.display()),
        ],
    );
    assert_eq!(reload.code(), Some(0), "{reload}\n{}", process.logs());
    let status = wait_running(&env, &nsenter, &process, supervisor);
    let child = host_pid_of_child(supervisor, status["child_pid"].as_u64().expect("a child"));
    let orphans = process.wait_for("2 more orphans reparented to the supervisor", || {
        let orphans: Vec<u32> = processes_with_parent(supervisor)
            .into_iter()
            .filter(|pid| *pid != child && proc_state(*pid) != Some('Z'))
            .filter(|pid| innermost_pid(*pid) != Some(ns_child as u32))
            .collect();
        (orphans.len() == 2).then_some(orphans)
    });
    std::fs::write(&release, b"").expect("release the orphans");
    wait_reaped(&process, supervisor, &orphans);

    stop_with_sigterm(&process, supervisor, child);
}

#[test]
#[ignore = "needs root and unshare"]
fn pid1_reaps_short_lived_orphans() {
    let env = Env::new();
    let (unshare, nsenter) = usable_tools(&env);
    let process = start_as_pid1(&env, &unshare, &["--orphans=5", "--linger-ms=20"]);
    let supervisor = supervisor_host_pid(&process);
    let status = wait_running(&env, &nsenter, &process, supervisor);
    let child = host_pid_of_child(supervisor, status["child_pid"].as_u64().expect("a child"));
    process.wait_for_log("made 5 orphans");
    process.wait_for("the supervisor to be left with its child alone", || {
        (processes_with_parent(supervisor) == vec![child]).then_some(())
    });
    // Watch for a second: no zombie appears late.
    let watch_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < watch_until {
        assert_eq!(
            zombie_children(supervisor),
            Vec::<u32>::new(),
            "{}",
            process.logs()
        );
        std::thread::sleep(POLL);
    }
    stop_with_sigterm(&process, supervisor, child);
}

/// A command from outside the pid namespace (a root shell on the host, with the control
/// directory mounted) is a command from root like any other.
#[test]
#[ignore = "needs root and unshare"]
fn control_commands_from_outside_the_pid_namespace() {
    let env = Env::new();
    let (unshare, nsenter) = usable_tools(&env);
    let process = start_as_pid1(&env, &unshare, &[]);
    let supervisor = supervisor_host_pid(&process);
    wait_running(&env, &nsenter, &process, supervisor);
    let outside = env.run(bin!("lb-orphans"), &["--littleboss=status-json"]);
    assert_eq!(
        outside.code(),
        Some(0),
        "status-json from the host, as root:\n{outside}\n{}",
        process.logs()
    );
    let status: Value = serde_json::from_str(&outside.stdout).expect("JSON");
    assert_eq!(status["supervisor_pid"], 1);
}
