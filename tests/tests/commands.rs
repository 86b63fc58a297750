//! The client commands (`status`, `status-json`, `stop`, `reload`), the listener flags,
//! and the command line's errors.

use littleboss_tests::{
    Env, NO_ARGS, bin, children_of, get, listener_addr, program_args, wait_gone,
};

/// Runs `mode` with no supervisor running and checks the refusal.
fn refused_without_supervisor(mode: &str) {
    let env = Env::new();
    let outcome = env.run(bin!("lb-http"), &[format!("--littleboss={mode}")]);
    assert_eq!(outcome.code(), Some(1), "{mode}: {outcome}");
    let expected = format!(
        "lbhttp: no supervisor running (no socket at {})",
        env.socket("lbhttp").display()
    );
    assert!(
        outcome.stderr.contains(&expected),
        "{mode}: expected {expected:?} in:\n{outcome}"
    );
    // Only the error and how to start one: nothing says it is reloading or stopping.
    assert_eq!(outcome.stdout, "", "{mode}: {outcome}");
    let start = format!(
        "lbhttp: start one with: {} --littleboss=start",
        bin!("lb-http").display()
    );
    assert!(
        outcome.stderr.contains(&start),
        "{mode}: expected {start:?} in:\n{outcome}"
    );
}

#[test]
fn upgrade_without_supervisor_fails() {
    refused_without_supervisor("upgrade");
}

/// A relative `LITTLEBOSS_DIR` would name another directory from each working
/// directory: every mode that uses it refuses it, saying why.
#[test]
fn a_relative_control_directory_is_refused() {
    let env = Env::new();
    for mode in ["start", "status", "stop", "reload"] {
        let mut command = env.command(bin!("lb-http"));
        command
            .arg(format!("--littleboss={mode}"))
            .env("LITTLEBOSS_DIR", "run/lb")
            .current_dir(env.path());
        let outcome = littleboss_tests::run_for(command, littleboss_tests::COMMAND_TIMEOUT);
        assert_eq!(outcome.code(), Some(1), "{mode}: {outcome}");
        assert!(
            outcome.stderr.contains(
                "LITTLEBOSS_DIR=\"run/lb\" is a relative path, which would name a different directory from each working directory; set it to an absolute path"
            ),
            "{mode}: {outcome}"
        );
        assert!(
            !env.path().join("run").exists(),
            "{mode}: nothing was created"
        );
    }
}

#[test]
fn stop_without_supervisor_fails() {
    refused_without_supervisor("stop");
}

#[test]
fn status_without_supervisor_fails() {
    refused_without_supervisor("status");
}

#[test]
fn status_json_without_supervisor_fails() {
    refused_without_supervisor("status-json");
}

#[test]
fn reload_without_supervisor_fails() {
    refused_without_supervisor("reload");
}

#[test]
fn unknown_mode_exits_2_with_usage() {
    let env = Env::new();
    let outcome = env.run(bin!("lb-http"), &["--littleboss=restart"]);
    assert_eq!(outcome.code(), Some(2), "{outcome}");
    assert!(
        outcome.stderr.contains("unknown mode \"restart\""),
        "{outcome}"
    );
    let usage = outcome
        .stderr
        .lines()
        .find(|line| line.starts_with("usage: "))
        .unwrap_or_else(|| panic!("no usage line:\n{outcome}"));
    assert!(
        usage.ends_with(" [--littleboss=MODE] [--LISTENER=ADDR ...] [ARGS...]"),
        "{outcome}"
    );
    assert!(
        outcome
            .stderr
            .contains("bypass, start, dev, stop, reload, upgrade, status, status-json"),
        "{outcome}"
    );
    assert!(outcome.stderr.contains("--http=ADDR"), "{outcome}");
    assert!(outcome.stderr.contains("--spare=ADDR"), "{outcome}");
    assert!(!env.dir().exists(), "nothing was started");
}

#[test]
fn status_prints_a_human_summary() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let child = sup.child_pid();
    let addr = sup.addr("http");
    let outcome = sup.run(&["--littleboss=status"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}");
    let out = &outcome.stdout;
    assert!(
        out.starts_with(&format!("lbhttp: supervisor pid {} started ", sup.pid())),
        "{out}"
    );
    let newest = littleboss::PROTOCOL;
    assert!(
        out.contains(&format!("(running; protocol {newest})")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "  supervisor binary {}, upgrades 0, protocols 1-{newest}\n",
            bin!("lb-http").display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("  child pid {child} started ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("  listener http tcp:{addr}\n")),
        "{out}"
    );
    assert!(out.contains("  listener spare off\n"), "{out}");
    assert!(
        out.contains("  reloads 0, failures 0, restarts 0\n"),
        "{out}"
    );
}

#[test]
fn second_start_is_refused_and_the_first_keeps_working() {
    let env = Env::new();
    let first = env.start(bin!("lb-http"), NO_ARGS);
    let child = first.child_pid();
    let second = env.start_nowait(bin!("lb-http"), NO_ARGS);
    assert_eq!(second.wait_code(), 1, "{}", second.logs());
    let expected = format!("already running (supervisor pid {})", first.pid());
    assert!(
        second.stderr().contains(&expected),
        "expected {expected:?}\n{}",
        second.logs()
    );
    assert_eq!(children_of(second.pid()), Vec::<u32>::new());
    // The first supervisor's socket still answers, with the same child.
    let status = first.status();
    assert_eq!(status["supervisor_pid"], first.pid());
    assert_eq!(status["child_pid"], child);
    assert_eq!(status["state"], "running");
    assert_eq!(get(first.addr("http")).expect("GET").pid, child);
}

#[test]
fn http_flag_sets_the_address() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), &["--http=127.0.0.1:0"]);
    let status = sup.status();
    let addr = listener_addr(&status, "http").expect("http is bound");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{status}");
    assert_eq!(status["listeners"]["spare"], "off");
    // The listener flag is littleboss's: the program does not see it.
    assert_eq!(
        program_args(&status),
        [bin!("lb-http").to_str().expect("UTF-8 path")]
    );
    assert_eq!(get(addr).expect("GET").pid, sup.child_pid());
}

#[test]
fn spare_flag_turns_the_spare_listener_on() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), &["--spare=127.0.0.1:0", "--take-spare"]);
    let status = sup.status();
    let http = listener_addr(&status, "http").expect("http is bound");
    let spare = listener_addr(&status, "spare").expect("spare is bound");
    assert_ne!(http, spare);
    let child = sup.child_pid();
    assert_eq!(get(spare).expect("GET on spare").pid, child);
    assert_eq!(get(http).expect("GET on http").pid, child);
    assert_eq!(
        program_args(&status),
        [
            bin!("lb-http").to_str().expect("UTF-8 path"),
            "--take-spare"
        ]
    );
}

#[test]
fn spare_listener_is_off_by_default() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), &["--take-spare"]);
    assert_eq!(sup.status()["listeners"]["spare"], "off");
    let child = sup.child_pid();
    sup.wait_for_log(&format!(
        "lb-http: pid {child} cannot take spare: listener \"spare\" is off"
    ));
}

#[test]
fn empty_http_flag_turns_http_off() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), &["--http="]);
    let status = sup.status();
    assert_eq!(status["listeners"]["http"], "off", "{status}");
    assert_eq!(status["state"], "running");
    let child = sup.child_pid();
    let line = sup.wait_for_log(&format!("lb-http: pid {child} cannot take http: "));
    assert!(line.contains("is off"), "{line}");
}

#[test]
fn reload_switches_to_a_copy_of_the_binary() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let copy = env.copy_binary(bin!("lb-http"), "lb-http-v2");
    let reload = env.run(&copy, &["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    let mut lines = reload.stdout.lines();
    assert_eq!(lines.next(), Some("reloading lbhttp"), "{reload}");
    let done = lines.next().unwrap_or_default();
    let prefix = format!("reloaded lbhttp: pid {old} -> ");
    let rest = done
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("unexpected line {done:?}\n{reload}"));
    let (new, ms) = rest
        .split_once(" in ")
        .unwrap_or_else(|| panic!("unexpected line {done:?}"));
    let new: u32 = new.parse().expect("new pid");
    ms.parse::<u64>().expect("milliseconds");
    assert_ne!(new, old);

    let status = sup.status();
    assert_eq!(status["child_pid"], new);
    assert_eq!(status["child_path"], copy.to_str().expect("UTF-8 path"));
    assert_eq!(
        status["previous_path"],
        bin!("lb-http").to_str().expect("UTF-8 path")
    );
    assert_eq!(status["reloads"], 1);
    assert_eq!(status["failures"], 0);
    assert_eq!(status["state"], "running");
    assert_eq!(status["supervisor_pid"], sup.pid());
    assert_eq!(listener_addr(&status, "http"), Some(addr), "same socket");
    wait_gone(old, "the old child");
    let answer = get(addr).expect("GET after the reload");
    assert_eq!(answer.pid, new);
    assert_eq!(answer.exe, copy.to_str().expect("UTF-8 path"));
    assert_eq!(children_of(sup.pid()), vec![new]);
}

#[test]
fn reload_passes_new_arguments_to_the_new_child() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let reload = sup.run(&["--littleboss=reload", "--", "--exit-code=9"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    let status = sup.status();
    assert_eq!(
        program_args(&status),
        [
            bin!("lb-http").to_str().expect("UTF-8 path"),
            "--exit-code=9"
        ]
    );
    assert_eq!(status["reloads"], 1);
    wait_gone(old, "the old child");
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(9), "the new child's code: {stop}");
    assert_eq!(sup.wait_code(), 9);
}

#[test]
fn failed_reload_is_reported_and_the_old_child_keeps_serving() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let reload = sup.run(&["--littleboss=reload", "--", "--exit-at-start"]);
    assert_eq!(reload.code(), Some(1), "{reload}");
    assert_eq!(reload.stdout, "reloading lbhttp\n", "{reload}");
    assert!(
        reload
            .stderr
            .starts_with("reload of lbhttp failed: new child pid "),
        "{reload}"
    );
    assert!(reload.stderr.contains("exited with code 3"), "{reload}");
    let status = sup.status();
    assert_eq!(status["child_pid"], old);
    assert_eq!(status["reloads"], 0);
    assert_eq!(status["failures"], 1);
    assert_eq!(status["state"], "running");
    assert_eq!(get(addr).expect("GET after the failed reload").pid, old);
}

/// A supervisor that never answers (here, a socket that accepts and says nothing) is
/// given up on within the deadline, and the client says what it was waiting for.
#[test]
fn a_supervisor_that_never_answers_is_given_up_on_in_time() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    std::fs::create_dir_all(env.dir()).expect("the control directory");
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 0700");
    let silent = std::os::unix::net::UnixListener::bind(env.socket("lbhttp")).expect("bind");
    // Accepted connections are kept open and never answered.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            keep.lock().expect("the list").push(stream);
        }
    });
    for mode in ["status", "reload", "stop"] {
        let started = std::time::Instant::now();
        let outcome = env.run(bin!("lb-http"), &[format!("--littleboss={mode}")]);
        let took = started.elapsed();
        assert_eq!(outcome.code(), Some(1), "{mode}: {outcome}");
        assert!(
            outcome.stderr.contains(
                "lbhttp: no answer from the supervisor within 10 s (waiting for its status)"
            ),
            "{mode}: {outcome}"
        );
        assert!(
            took < std::time::Duration::from_secs(20),
            "{mode} took {took:?}"
        );
    }
}
