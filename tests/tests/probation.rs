//! Probation: after a reload to a binary that declares one, the old child stands by,
//! warm, and a new child that crashes, says it is unhealthy, serves too many 5xx or is
//! rolled back by the operator gives way to it at once; one that passes (its time, or
//! `promote`) is kept and the old one winds down. A reload, an upgrade or SIGHUP meanwhile
//! is refused; a stop stops both. With no child standing by (it died, it cannot stand
//! by, or `standby = false`) a rollback starts the previous binary again (cold).
//!
//! Helper program: `lb-probation` (service `lbprob`; see its module docs for the
//! switches), which serves with the HTTP helpers, so that it stands by with no code of
//! its own, and `lb-http` of the previous release, for the cross-release tests.

use std::path::{Path, PathBuf};

use littleboss_tests::load_support::{Client, Load};
use littleboss_tests::release_support::{RELEASE_8589D1F, assert_ok};
use littleboss_tests::{Env, NO_ARGS, Outcome, Spawned, Supervisor, Value, bin, get, is_alive};
use littleboss_tests::{kill, wait_gone};

/// Two copies of `lb-probation`, `one` and `two`, in `env`.
fn copies(env: &Env) -> (PathBuf, PathBuf) {
    let bin = bin!("lb-probation");
    (env.copy_binary(bin, "one"), env.copy_binary(bin, "two"))
}

/// A pid field of a status, if set.
fn pid_in(status: &Value, key: &str) -> Option<u32> {
    status[key]
        .as_u64()
        .map(|pid| u32::try_from(pid).expect("a pid"))
}

/// Starts `bin --littleboss=reload -- ARGS` in the background.
fn reload(env: &Env, bin: &Path, args: &[&str]) -> Spawned {
    let mut all = vec!["--littleboss=reload", "--"];
    all.extend(args);
    env.spawn(bin, &all)
}

/// Waits until the supervisor's new child is on probation; its pid.
fn on_probation(sup: &Supervisor<'_>) -> u32 {
    let status = sup.wait_for("a child on probation", || {
        let status = sup.try_status().ok()?;
        (status["state"] == "probation").then_some(status)
    });
    let pid = pid_in(&status, "child_pid").expect("a child pid");
    sup.track(pid);
    pid
}

/// The line a reload client printed once its new child was ready.
fn said_on_probation(reload: &Spawned, old: u32, new: u32, secs: u64) {
    let prefix = format!("reloaded lbprob: pid {old} -> {new} in ");
    let suffix = format!(" ms; on probation for {secs} s");
    let stdout = reload.stdout();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&prefix) && l.ends_with(&suffix)),
        "no {prefix:?}...{suffix:?} in {stdout:?}"
    );
}

/// The reload client's failure: exit 1 and `reload of lbprob failed: REASON`.
fn failed(reload: &Spawned) -> String {
    assert_eq!(
        reload.wait_code(),
        1,
        "{}{}",
        reload.stdout(),
        reload.stderr()
    );
    let stderr = reload.stderr();
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("reload of lbprob failed: "))
        .unwrap_or_else(|| panic!("no failure line in {stderr:?}"))
        .to_string()
}

/// Waits until `addr` is answered by `pid`.
fn answered_by(sup: &Supervisor<'_>, addr: std::net::SocketAddr, pid: u32) {
    sup.wait_for(&format!("pid {pid} to answer"), || {
        (get(addr).ok()?.pid == pid).then_some(())
    });
}

/// Checks what an outcome printed, exactly, and its exit code.
fn printed(outcome: &Outcome, code: i32, stdout: &str, stderr: &str) {
    assert_eq!(outcome.code(), Some(code), "{outcome}");
    assert_eq!(outcome.stdout, stdout, "{outcome}");
    assert!(outcome.stderr.ends_with(stderr), "{outcome}");
}

#[test]
fn a_new_child_that_crashes_on_probation_is_rolled_back_to_the_old_one_kept_warm() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let load = Load::start(addr, &[Client::Fresh, Client::KeepAlive]);
    load.wait_for_pid(&sup, old);
    let reload = reload(
        &env,
        &two,
        &["--probation-ms=30000", "--crash-after-ms=700"],
    );
    let new = on_probation(&sup);
    let status = sup.status();
    assert_eq!(pid_in(&status, "standby_pid"), Some(old), "{status}");
    assert!(status["probation_ends"].is_string(), "{status}");
    sup.wait_for_log(&format!("lb-probation: pid {old} standing by"));
    sup.wait_for("the new child to answer", || {
        (get(addr).ok()?.pid == new).then_some(())
    });
    let reason = failed(&reload);
    said_on_probation(&reload, old, new, 30);
    assert!(
        reason.starts_with("rolled back after 0.")
            && reason.ends_with(&format!(
                " s of probation (warm): new child pid {new} exited with code 101; pid {old} serves again"
            )),
        "{reason}"
    );
    sup.wait_for_log(&format!("lb-probation: pid {old} resumed"));
    answered_by(&sup, addr, old);
    let (failures, answered_by, _) = load.finish();
    assert!(answered_by.contains(&old) && answered_by.contains(&new));
    // Only requests on the crashed process's connections may fail: at most one per
    // client, the one it was given, or sent to it, as it died.
    assert!(failures.len() <= 2, "{failures:#?}\n{}", sup.logs());
    let status = sup.status();
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(pid_in(&status, "child_pid"), Some(old), "{status}");
    assert_eq!(
        (status["reloads"].as_u64(), status["failures"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(status["standby_pid"].is_null(), "{status}");
    assert_eq!(
        sup.stderr().matches("started pid").count(),
        1,
        "no cold start"
    );
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

#[test]
fn an_unhealthy_new_child_is_rolled_back_and_its_idle_connections_move_back() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let load = Load::start(addr, &[Client::KeepAlive, Client::KeepAlive]);
    load.wait_for_pid(&sup, old);
    let reload = reload(
        &env,
        &two,
        &["--probation-ms=30000", "--unhealthy-after-ms=1500"],
    );
    let new = on_probation(&sup);
    load.wait_for_pid(&sup, new);
    let reason = failed(&reload);
    assert!(
        reason.ends_with(&format!(
            "(warm): unhealthy: told to; pid {old} serves again"
        )),
        "{reason}"
    );
    load.wait_for_pid(&sup, old);
    wait_gone(new, "the unhealthy child");
    let closes = load.tally.closes.load(std::sync::atomic::Ordering::Relaxed);
    let (failures, _, _) = load.finish();
    assert!(failures.is_empty(), "{failures:#?}\n{}", sup.logs());
    assert_eq!(
        closes,
        0,
        "the connections moved both ways:\n{}",
        sup.logs()
    );
    assert!(
        sup.stderr()
            .contains(&format!("rolled-back child pid {new} exited with code 0")),
        "{}",
        sup.logs()
    );
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

#[test]
fn a_new_child_serving_too_many_5xx_is_rolled_back_by_its_own_helper() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let reload = reload(
        &env,
        &two,
        &["--probation-ms=30000", "--probation-5xx=10", "--status=503"],
    );
    let new = on_probation(&sup);
    // Only the new child accepts, and answers 503: after twenty, its helper says so.
    let mut asked = 0;
    sup.wait_for("the rollback", || {
        let _ = get(addr);
        asked += 1;
        reload.try_exit().map(|_| ())
    });
    assert!(asked >= 20, "{asked}");
    assert!(!is_alive(new) || sup.stderr().contains(&format!("pid {new} lameduck")));
    let reason = failed(&reload);
    assert!(
        reason.ends_with(&format!(
            "(warm): 5xx share 100% of 20 responses; pid {old} serves again"
        )),
        "{reason}"
    );
    answered_by(&sup, addr, old);
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

#[test]
fn promote_passes_a_probation_and_rollback_ends_one_and_each_is_refused_without_one() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    for mode in ["promote", "rollback"] {
        let outcome = env.run(&one, &[format!("--littleboss={mode}")]);
        printed(&outcome, 1, "", "lbprob: no reload is on probation\n");
    }
    let first = reload(&env, &two, &["--probation-ms=60000"]);
    let new = on_probation(&sup);
    let promoted = env.run(&one, &["--littleboss=promote"]);
    assert_eq!(promoted.code(), Some(0), "{promoted}");
    let line = promoted.stdout.trim_end();
    assert!(
        line.starts_with(&format!(
            "promoted lbprob: pid {new} passed probation after "
        )),
        "{promoted}"
    );
    assert_eq!(first.wait_code(), 0, "{}{}", first.stdout(), first.stderr());
    said_on_probation(&first, old, new, 60);
    assert!(
        first
            .stdout()
            .ends_with(&format!("probation passed: pid {new} serves lbprob\n")),
        "{}",
        first.stdout()
    );
    wait_gone(old, "the old child");
    assert_eq!(sup.status()["reloads"], 1);
    // The next reload is rolled back by the operator: the child it replaced serves.
    let second = reload(&env, &one, &["--probation-ms=60000"]);
    let newer = on_probation(&sup);
    let rolled = env.run(&one, &["--littleboss=rollback"]);
    printed(
        &rolled,
        0,
        &format!("rolled back lbprob: pid {new} serves again\n"),
        "",
    );
    let reason = failed(&second);
    assert!(
        reason.ends_with(&format!(
            "(warm): rolled back by the operator; pid {new} serves again"
        )),
        "{reason}"
    );
    answered_by(&sup, addr, new);
    wait_gone(newer, "the rolled back child");
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

#[test]
fn a_probation_that_runs_its_time_passes_and_status_shows_it_meanwhile() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let old = sup.child_pid();
    let reload = reload(&env, &two, &["--probation-ms=1500"]);
    let new = on_probation(&sup);
    let status = env.run(&one, &["--littleboss=status"]);
    assert!(
        (status.stdout).contains(&format!("(probation; protocol {})", littleboss::PROTOCOL)),
        "{status}"
    );
    assert!(
        status.stdout.contains("  on probation until 20"),
        "{status}"
    );
    assert!(
        status
            .stdout
            .contains(&format!("  old child pid {old} stands by")),
        "{status}"
    );
    assert!(is_alive(old));
    assert_eq!(
        reload.wait_code(),
        0,
        "{}{}",
        reload.stdout(),
        reload.stderr()
    );
    assert_eq!(
        reload.stdout().lines().last(),
        Some(format!("probation passed: pid {new} serves lbprob").as_str())
    );
    wait_gone(old, "the old child");
    sup.wait_for_log(&format!("old child pid {old} exited with code 0"));
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

#[test]
fn a_reload_or_an_upgrade_during_a_probation_is_refused_and_a_stop_stops_both() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let old = sup.child_pid();
    let reload = reload(&env, &two, &["--probation-ms=60000"]);
    let new = on_probation(&sup);
    for mode in ["reload", "upgrade"] {
        let outcome = env.run(&one, &[format!("--littleboss={mode}")]);
        assert_eq!(outcome.code(), Some(1), "{outcome}");
        let refusal = format!(
            "lbprob: pid {new} is on probation for 60 s more: wait, or run --littleboss=promote or --littleboss=rollback"
        );
        let said = outcome.stderr.lines().last().unwrap_or_default();
        assert!(
            said.starts_with(&format!("lbprob: pid {new} is on probation for "))
                && said.ends_with(
                    " s more: wait, or run --littleboss=promote or --littleboss=rollback"
                ),
            "{outcome} (like {refusal:?})"
        );
    }
    sup.signal(littleboss_tests::Signal::HUP);
    sup.wait_for_log("reload refused: pid ");
    let stopped = env.run(&one, &["--littleboss=stop"]);
    assert_eq!(stopped.code(), Some(0), "{stopped}");
    let reason = failed(&reload);
    assert_eq!(reason, "cancelled: lbprob is stopping");
    wait_gone(old, "the old child");
    wait_gone(new, "the new child");
    assert_eq!(sup.wait_code(), 0);
}

#[test]
fn a_standby_child_that_dies_makes_the_rollback_cold() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let reload = reload(&env, &two, &["--probation-ms=60000"]);
    let new = on_probation(&sup);
    kill(old);
    sup.wait_for_log("while standing by; the probation goes on");
    assert!(sup.status()["standby_pid"].is_null());
    let rolled = env.run(&one, &["--littleboss=rollback"]);
    assert_eq!(rolled.code(), Some(0), "{rolled}");
    let reason = failed(&reload);
    assert!(
        reason.contains("of probation (cold): rolled back by the operator; pid "),
        "{reason}"
    );
    let cold = sup.child_pid();
    assert_ne!(cold, new);
    answered_by(&sup, addr, cold);
    assert_eq!(get(addr).expect("an answer").exe, one.display().to_string());
    wait_gone(new, "the rolled back child");
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

#[test]
fn an_old_child_that_cannot_stand_by_winds_down_and_a_crash_rolls_back_cold() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, &["--own-loop"]);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let reload = reload(
        &env,
        &two,
        &["--probation-ms=60000", "--crash-after-ms=1000"],
    );
    let new = on_probation(&sup);
    assert!(sup.status()["standby_pid"].is_null());
    wait_gone(old, "the old child, which cannot stand by");
    let reason = failed(&reload);
    assert!(
        reason.contains(&format!(
            "of probation (cold): new child pid {new} exited with code 101; pid "
        )),
        "{reason}"
    );
    let cold = sup.child_pid();
    answered_by(&sup, addr, cold);
    assert_eq!(get(addr).expect("an answer").exe, one.display().to_string());
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

#[test]
fn standby_false_has_the_old_child_wind_down_at_once() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let old = sup.child_pid();
    let reload = reload(&env, &two, &["--probation-ms=60000", "--no-standby"]);
    on_probation(&sup);
    wait_gone(old, "the old child");
    sup.wait_for_log(&format!("old child pid {old} exited with code 0"));
    assert!(!sup.stderr().contains("standing by"), "{}", sup.logs());
    let promoted = env.run(&one, &["--littleboss=promote"]);
    assert_eq!(promoted.code(), Some(0), "{promoted}");
    assert_eq!(reload.wait_code(), 0);
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

/// The previous release's child (protocol 3) cannot stand by: under this supervisor a
/// reload to a child of this release with a probation winds it down, and a rollback
/// starts it again; under the previous release's supervisor, a child of this release
/// declares no probation (the conversation is protocol 3) and the reload is done at
/// once.
#[test]
fn probation_with_the_previous_release_both_ways() {
    let env = Env::new();
    let previous = RELEASE_8589D1F.build(bin!("lb-http"));
    let previous = env.copy_binary(&previous, "previous");
    let this = env.copy_binary(bin!("lb-probation"), "this");
    // This supervisor, the previous release's child. (Its client is the previous
    // release's binary, which is service `lbhttp` with no arguments.)
    let sup = env
        .start_nowait(&this, &["--name=lbhttp"])
        .with_client(&previous);
    sup.wait_running();
    let addr = sup.addr("http");
    // (`--` and nothing after: the previous release's child gets no arguments.)
    assert_ok(
        &sup,
        "reload",
        &env.run(&previous, &["--littleboss=reload", "--"]),
    );
    let old = sup.wait_for("the previous release's child", || {
        let answer = get(addr).ok()?;
        (answer.exe == previous.display().to_string()).then_some(answer.pid)
    });
    let reload = env.spawn(
        &this,
        &[
            "--littleboss=reload",
            "--",
            "--name=lbhttp",
            "--probation-ms=60000",
        ],
    );
    let new = on_probation(&sup);
    assert!(sup.status()["standby_pid"].is_null());
    wait_gone(old, "the previous release's child");
    let rolled = env.run(&this, &["--name=lbhttp", "--littleboss=rollback"]);
    assert_eq!(rolled.code(), Some(0), "{rolled}");
    assert_eq!(reload.wait_code(), 1);
    let cold = sup.wait_for("the previous release again", || {
        let answer = get(addr).ok()?;
        (answer.exe == previous.display().to_string()).then_some(answer.pid)
    });
    assert_ne!(cold, new);
    assert_ok(
        &sup,
        "stop",
        &env.run(&this, &["--name=lbhttp", "--littleboss=stop"]),
    );
    // The previous release's supervisor, this release's child and client.
    let sup = env.start(&previous, NO_ARGS);
    let addr = sup.addr("http");
    let outcome = env.run(
        &this,
        &[
            "--name=lbhttp",
            "--littleboss=reload",
            "--",
            "--name=lbhttp",
            "--probation-ms=60000",
        ],
    );
    assert_ok(&sup, "reload", &outcome);
    assert!(
        outcome.stdout.contains("reloaded lbhttp: pid ") && !outcome.stdout.contains("probation"),
        "{outcome}"
    );
    let status = sup.status();
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(
        get(addr).expect("an answer").exe,
        this.display().to_string()
    );
    assert_ok(&sup, "stop", &env.run(&previous, &["--littleboss=stop"]));
}

/// Which children can stand by crosses an upgrade (upgrade state version 3 and after): the
/// child the upgraded supervisor inherited stands by at the next probation, and a crash
/// rolls back to it warm.
#[test]
fn a_child_inherited_through_an_upgrade_still_stands_by() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let upgraded = env.run(&two, &["--littleboss=upgrade"]);
    assert_ok(&sup, "upgrade", &upgraded);
    let log = sup.wait_for_log("(upgrade state version 5)");
    assert!(log.contains("re-executing as"), "{log}");
    let serving = sup.wait_running();
    let old = pid_in(&serving, "child_pid").expect("a child");
    let reload = reload(
        &env,
        &one,
        &["--probation-ms=60000", "--crash-after-ms=500"],
    );
    on_probation(&sup);
    assert_eq!(pid_in(&sup.status(), "standby_pid"), Some(old));
    let reason = failed(&reload);
    assert!(
        reason.contains("(warm)") && reason.ends_with(&format!("pid {old} serves again")),
        "{reason}"
    );
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

/// A client of protocol 3 knows of no verdict: its reload is answered `Reloaded` as
/// soon as the new child is ready, as before, and the probation goes on (its verdict
/// only in the log).
#[test]
fn a_client_of_protocol_3_is_answered_at_ready_and_the_probation_goes_on() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let old = sup.child_pid();
    let outcome = littleboss_tests::release_support::run_with_env(
        &env,
        &two,
        &[("LITTLEBOSS_TEST_PROTOCOLS", "1-3")],
        &["--littleboss=reload", "--", "--probation-ms=60000"],
    );
    assert_eq!(outcome.code(), Some(0), "{outcome}");
    let line = outcome
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        line.starts_with(&format!("reloaded lbprob: pid {old} -> ")) && line.ends_with(" ms"),
        "{outcome}"
    );
    let new = on_probation(&sup);
    assert_eq!(pid_in(&sup.status(), "standby_pid"), Some(old));
    let rolled = env.run(&one, &["--littleboss=rollback"]);
    assert_eq!(rolled.code(), Some(0), "{rolled}");
    sup.wait_for_log("rolled back by the operator");
    wait_gone(new, "the rolled back child");
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}

/// `unhealthy` outside a supervisor (bypass mode) is said once and changes nothing.
#[test]
fn unhealthy_in_bypass_mode_is_said_and_ignored() {
    let env = Env::new();
    let (one, _) = copies(&env);
    let run = env.spawn(&one, &["--unhealthy-after-ms=100"]);
    run.wait_for("the line", || {
        run.stderr()
            .contains("littleboss: unhealthy (told to) ignored: in bypass mode")
            .then_some(())
    });
    assert!(run.try_exit().is_none(), "it goes on");
    run.signal(littleboss_tests::Signal::TERM);
    assert_eq!(run.wait_code(), 0, "{}", run.stderr());
}

/// A connection busy when its process stood by was to move; after the rollback it is
/// served here again as one just accepted, so that it moves at the next reload instead
/// of being closed.
#[test]
fn a_connection_busy_through_a_rolled_back_probation_still_moves_at_the_next_reload() {
    let env = Env::new();
    let (one, two) = copies(&env);
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let mut kept = littleboss_tests::reload_support::KeepAlive::connect(addr).expect("connect");
    let slow = std::thread::spawn(move || {
        let response = kept.get_path("/slow/2000");
        (kept, response)
    });
    sup.wait_for_log(&format!("lb-probation: pid {old} slow 2000"));
    let reload = reload(
        &env,
        &two,
        &["--probation-ms=60000", "--unhealthy-after-ms=300"],
    );
    on_probation(&sup);
    let reason = failed(&reload);
    assert!(reason.contains("(warm): unhealthy: told to"), "{reason}");
    let (mut kept, response) = slow.join().expect("the slow request");
    let response = response.expect("the slow answer");
    assert!(!response.close, "{response:?}");
    let answer = littleboss_tests::Answer::parse(&response.body).expect("an answer");
    assert_eq!(answer.pid, old);
    // The next reload moves it: the next request is the new child's, with no close.
    let outcome = env.run(&two, &["--littleboss=reload", "--"]);
    assert_ok(&sup, "reload", &outcome);
    let newest = sup.child_pid();
    assert_ne!(newest, old);
    wait_gone(old, "the old child");
    let response = kept.get().expect("a request on the kept connection");
    assert!(!response.close, "{response:?}\n{}", sup.logs());
    let answer = littleboss_tests::Answer::parse(&response.body).expect("an answer");
    assert_eq!(answer.pid, newest, "{}", sup.logs());
    assert_ok(&sup, "stop", &env.run(&one, &["--littleboss=stop"]));
}
