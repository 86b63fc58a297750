//! Zero-downtime reload: reloads under load lose no request; a reload that fails (the new
//! binary exits, never becomes ready, is not executable, or asks for an address in use)
//! leaves the old child serving; a reloaded child that crashes later falls back to the
//! previous binary, even one deleted from disk; persistent programs restart with growing
//! delays; one reload runs at a time (a second one, SIGHUP, and a stop during a reload);
//! a reload moves a listener; keep-alive connections are finished, not reset; and what
//! `status` says meanwhile.
//!
//! Helper programs: `lb-http` (service `lbhttp`), and this file's own:
//! `lb-reload-keepalive` (service `lbkeep`, keep-alive HTTP), `lb-reload-gate` (an
//! `lbhttp` that is ready only when the test creates a file), `lb-reload-ready` (an
//! `lbhttp` that never becomes ready, `ready_timeout = "1s"`), `lb-reload-chmod` (an
//! `lbhttp` client that takes its own execute bits away) and `lb-reload-persist`
//! (service `lbpersist`, `persist = true`).
//!
//! Two tests run the `http` example, which `cargo test --workspace` builds (as the
//! README's test command does); `cargo test -p littleboss-tests` alone does not, so run
//! `cargo build -p littleboss-examples --example http` first in that case.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use littleboss_tests::load_support::{Client, Load, parse_answer};
use littleboss_tests::reload_support::KeepAlive;
use littleboss_tests::{
    Env, NO_ARGS, Outcome, Signal, Spawned, Supervisor, Value, bin, children_of, example, get,
    is_alive, listener_addr, port_is_free, program_args, wait_gone,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A path as the `&str` that `status-json` shows.
fn shown(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A pid field of a status (`child_pid`), if it is set.
fn pid_in(status: &Value, key: &str) -> Option<u32> {
    status[key]
        .as_u64()
        .map(|pid| u32::try_from(pid).expect("a pid"))
}

/// Checks a successful `reload` of `service` from pid `old`: exit 0, stdout exactly
/// `reloading NAME` and `reloaded NAME: pid OLD -> NEW in N ms`. Returns NEW.
fn reloaded(outcome: &Outcome, service: &str, old: u32) -> u32 {
    assert_eq!(outcome.code(), Some(0), "reload failed: {outcome}");
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{outcome}");
    assert_eq!(lines[0], format!("reloading {service}"), "{outcome}");
    let prefix = format!("reloaded {service}: pid {old} -> ");
    let (new, ms) = lines[1]
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|rest| rest.split_once(" in "))
        .unwrap_or_else(|| panic!("expected {prefix:?}NEW in N ms:\n{outcome}"));
    let new: u32 = new.parse().unwrap_or_else(|_| panic!("a pid: {outcome}"));
    ms.parse::<u64>()
        .unwrap_or_else(|_| panic!("a number of ms: {outcome}"));
    assert_ne!(new, old, "{outcome}");
    new
}

/// Checks a failed `reload` of `service`: exit 1, stdout only `reloading NAME`, and
/// `reload of NAME failed: REASON` on stderr. Returns REASON.
fn reload_failed(outcome: &Outcome, service: &str) -> String {
    assert_eq!(outcome.code(), Some(1), "the reload should fail: {outcome}");
    assert_eq!(
        outcome.stdout,
        format!("reloading {service}\n"),
        "{outcome}"
    );
    let prefix = format!("reload of {service} failed: ");
    outcome
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{outcome}"))
        .to_string()
}

/// The pid in `new child pid N ...` (the reason of a failed reload).
fn new_child_pid(reason: &str) -> u32 {
    reason
        .strip_prefix("new child pid ")
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(pid, _)| pid.parse().ok())
        .unwrap_or_else(|| panic!("no new child pid in {reason:?}"))
}

/// Waits until the supervisor's status says `reloading`, and returns the pid of the new
/// child it started (from its log line `reloading: started pid N`).
fn wait_reloading(sup: &Supervisor<'_>) -> u32 {
    sup.wait_reloading_state();
    let line = sup.wait_for_log("reloading: started pid ");
    let pid = line
        .split_once("reloading: started pid ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(pid, _)| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    sup.track(pid);
    pid
}

/// How many children a supervisor started for reloads, from its log.
fn reload_children_started(sup: &Supervisor<'_>) -> usize {
    sup.stderr().matches("reloading: started pid ").count()
}

/// The supervisor's children now, sorted.
fn sorted(mut pids: Vec<u32>) -> Vec<u32> {
    pids.sort_unstable();
    pids
}

/// Checks that a failed reload left the old child alone: the same child serves `addr`,
/// state `running`, no reload counted, `failures` as given, and no other child.
fn old_child_kept(sup: &Supervisor<'_>, old: u32, addr: SocketAddr, failures: u64) {
    let status = sup.status();
    assert_eq!(pid_in(&status, "child_pid"), Some(old), "{status}");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["reloads"], 0, "{status}");
    assert_eq!(status["failures"], failures, "{status}");
    assert_eq!(status["child_path"], shown(sup.bin()), "{status}");
    assert!(status["previous_path"].is_null(), "{status}");
    assert!(is_alive(old));
    assert_eq!(children_of(sup.pid()), vec![old], "no other child is left");
    assert_eq!(get(addr).expect("GET after the failed reload").pid, old);
}

// ---------------------------------------------------------------------------------------
// 1. Reloads under load
// ---------------------------------------------------------------------------------------

/// What becomes of keep-alive connections at a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeptAlive {
    /// The old child answers their next request with `Connection: close`.
    Closed,
    /// They move to the new child (the HTTP helpers).
    Moved,
}

/// Starts `bin` supervised (from a copy), loads it with `clients`, reloads it `reloads`
/// times alternating two copies, and checks that no request failed and that every
/// child answered.
fn reload_under_load(
    bin: &Path,
    service: &str,
    start_args: &[&str],
    clients: &[Client],
    reloads: usize,
    keepalive: KeptAlive,
) {
    let env = Env::new();
    let copies = [env.copy_binary(bin, "one"), env.copy_binary(bin, "two")];
    let sup = env.start(&copies[0], start_args);
    let addr = sup.addr("http");
    let mut pids = vec![sup.child_pid()];
    let load = Load::start(addr, clients);
    load.wait_for_pid(&sup, pids[0]);
    for i in 1..=reloads {
        let copy = &copies[i % 2];
        let old = pids[pids.len() - 1];
        let outcome = env.run(copy, &["--littleboss=reload"]);
        let new = reloaded(&outcome, service, old);
        sup.track(new);
        let status = sup.status();
        assert_eq!(status["child_path"], shown(copy), "{status}");
        // Every kind of client moves to the new child (keep-alive ones when the old one
        // answers them with `Connection: close`, or with their connection).
        load.wait_for_pid(&sup, new);
        pids.push(new);
    }
    let closes = load.tally.closes.load(Ordering::Relaxed);
    let (failures, answered_by, ok) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during {reloads} reloads: {failures:#?}\n{}",
        failures.len(),
        ok + failures.len() as u64,
        sup.logs()
    );
    let all: BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(answered_by, all, "every child answered, and only they did");
    if clients.contains(&Client::KeepAlive) {
        match keepalive {
            KeptAlive::Closed => assert!(
                closes >= reloads as u64,
                "each old child closed its keep-alive connections ({closes} closes)"
            ),
            KeptAlive::Moved => assert_eq!(
                closes, 0,
                "keep-alive connections move to the new child, never told to close"
            ),
        }
    }
    let status = sup.status();
    assert_eq!(status["reloads"], reloads as u64, "{status}");
    assert_eq!(status["failures"], 0, "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(status["state"], "running", "{status}");
    let last = pids[pids.len() - 1];
    for old in &pids[..pids.len() - 1] {
        wait_gone(*old, "an old child");
    }
    assert_eq!(children_of(sup.pid()), vec![last]);
}

#[test]
fn reload_under_load_with_fresh_and_keepalive_connections_loses_no_request() {
    use Client::{Fresh, KeepAlive};
    reload_under_load(
        bin!("lb-reload-keepalive"),
        "lbkeep",
        NO_ARGS,
        &[Fresh, Fresh, KeepAlive, KeepAlive],
        4,
        KeptAlive::Closed,
    );
}

#[test]
fn reload_of_lb_http_under_load_loses_no_request() {
    use Client::Fresh;
    reload_under_load(
        bin!("lb-http"),
        "lbhttp",
        NO_ARGS,
        &[Fresh, Fresh, Fresh],
        3,
        KeptAlive::Closed,
    );
}

#[test]
fn reload_of_the_http_example_under_load_loses_no_request() {
    use Client::{Fresh, KeepAlive};
    reload_under_load(
        &example!("http"),
        "http",
        &["--http=127.0.0.1:0"],
        &[Fresh, Fresh, KeepAlive, KeepAlive],
        4,
        KeptAlive::Moved,
    );
}

// ---------------------------------------------------------------------------------------
// 2. Reloads that fail before the new child is ready
// ---------------------------------------------------------------------------------------

/// Runs `reload` (a failing reload) against an `lb-http` supervisor under load, checks
/// that only the old child answered throughout and that it is left alone, and returns
/// the failure's reason.
fn failing_reload(reload: impl FnOnce(&Env) -> Outcome) -> String {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let load = Load::start(addr, &[Client::Fresh, Client::Fresh]);
    load.wait_for_pid(&sup, old);
    let outcome = reload(&env);
    let reason = reload_failed(&outcome, "lbhttp");
    // Requests go on being answered after the failure, by the same child.
    let before = load.tally.ok.load(Ordering::Relaxed);
    sup.wait_for("requests answered after the failed reload", || {
        (load.tally.ok.load(Ordering::Relaxed) >= before + 10).then_some(())
    });
    let (failures, answered_by, _) = load.finish();
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    assert_eq!(
        answered_by,
        BTreeSet::from([old]),
        "only the old child answered"
    );
    old_child_kept(&sup, old, addr, 1);
    reason
}

/// [`failing_reload`] by a copy of `bin` (named `copy`) run with `args`, whose new child
/// fails: checks that the reason says `expected`, and waits for that child to be gone.
fn failing_new_child(bin: &Path, copy: &str, args: &[&str], expected: &str) {
    let reason = failing_reload(|env| {
        let copy = env.copy_binary(bin, copy);
        env.run(&copy, args)
    });
    assert!(
        reason.contains(expected),
        "the reason names {expected:?}: {reason:?}"
    );
    wait_gone(new_child_pid(&reason), "the failed new child");
}

#[test]
fn reload_to_a_binary_that_exits_at_start_fails_and_the_old_child_serves_on() {
    // The reason names the exit code.
    failing_new_child(
        bin!("lb-http"),
        "lb-http-new",
        &["--littleboss=reload", "--", "--exit-at-start"],
        " exited with code 3 after ",
    );
}

#[test]
fn reload_to_a_binary_that_never_becomes_ready_fails_and_the_old_child_serves_on() {
    // The reason names the missing ready().
    let reason = failing_reload(|env| {
        let copy = env.copy_binary(bin!("lb-reload-ready"), "never-ready");
        env.run(&copy, &["--littleboss=reload"])
    });
    // It says what to do, and how long it waited, once: its ready timeout is 1 s,
    // counted from its hello, which a loaded machine may delay.
    let (_, said) = reason
        .split_once(" was killed: ")
        .unwrap_or_else(|| panic!("the reason says it was killed: {reason:?}"));
    let within = said
        .strip_prefix("it declares calls_ready = true but did not call ready() within ")
        .and_then(|rest| rest.strip_suffix(": call lb.ready() once it serves, or drop calls_ready"))
        .unwrap_or_else(|| panic!("the reason names the missing ready() and the fix: {reason:?}"));
    let secs: f64 = within
        .strip_suffix(" s")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a time in seconds: {reason:?}"));
    assert!(secs >= 1.0, "{reason:?}");
    assert!(!reason.contains(" after "), "no doubled time: {reason:?}");
    wait_gone(new_child_pid(&reason), "the failed new child");
}

#[test]
fn reload_to_a_binary_that_panics_at_start_quotes_the_panic() {
    // The panic's message and place reach the one who asked, not only the log.
    let reason = failing_reload(|env| {
        let copy = env.copy_binary(bin!("lb-http"), "lb-http-panics");
        env.run(&copy, &["--littleboss=reload", "--", "--panic-at-start"])
    });
    assert!(
        reason.contains(" exited with code 101 after "),
        "{reason:?}"
    );
    assert!(
        reason.contains("(its main panicked at ")
            && reason.contains("lb-http.rs:")
            && reason.ends_with(": lb-http: told to panic at start)"),
        "the reason quotes the panic and its place: {reason:?}"
    );
}

#[test]
fn reload_to_a_binary_whose_main_returns_an_io_error_quotes_its_text() {
    let reason = failing_reload(|env| {
        let copy = env.copy_binary(bin!("lb-http"), "lb-http-errs");
        env.run(&copy, &["--littleboss=reload", "--", "--take-listener=htp"])
    });
    assert!(
        reason.contains("(its main returned an error: no listener named \"htp\""),
        "the Display text of the io::Error: {reason:?}"
    );
    assert!(
        !reason.contains("Custom {"),
        "not its Debug form: {reason:?}"
    );
}

#[test]
fn reload_to_a_file_that_is_not_executable_fails_and_the_old_child_serves_on() {
    let mut copy = PathBuf::new();
    let reason = failing_reload(|env| {
        copy = env.copy_binary(bin!("lb-reload-chmod"), "not-executable");
        let outcome = env.run(&copy, &["--littleboss=reload", "--chmod-self"]);
        let mode = std::fs::metadata(&copy)
            .expect("the copy")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "the helper took its execute bits away");
        outcome
    });
    assert_eq!(reason, format!("{} is not executable", copy.display()));
}

/// The client passes its own executable as an fd: the supervisor runs that very file,
/// though it was deleted before the request was sent (its path is only shown).
#[test]
fn reload_runs_the_very_binary_that_asked_even_once_deleted() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let copy = env.copy_binary(bin!("lb-reload-chmod"), "deleted");
    let outcome = env.run(&copy, &["--littleboss=reload", "--unlink-self"]);
    assert!(!copy.exists(), "the client deleted itself");
    let new = reloaded(&outcome, "lbhttp", old);
    sup.track(new);
    let exe = std::fs::read_link(format!("/proc/{new}/exe")).expect("the new child's exe");
    assert_eq!(
        exe.display().to_string(),
        format!("{} (deleted)", copy.display()),
        "the new child runs the deleted file"
    );
    let status = sup.status();
    assert_eq!(status["child_pid"], new, "{status}");
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
}

// ---------------------------------------------------------------------------------------
// 3, 4. Fallback to the previous binary
// ---------------------------------------------------------------------------------------

#[test]
fn a_reloaded_child_that_crashes_falls_back_to_the_previous_binary_and_arguments() {
    let env = Env::new();
    let original = bin!("lb-http");
    let sup = env.start(original, &["--slow-ms=1"]);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let crasher = env.copy_binary(original, "crasher");
    let outcome = env.run(
        &crasher,
        &["--littleboss=reload", "--", "--crash-after-ms=1000"],
    );
    let new = reloaded(&outcome, "lbhttp", old);
    sup.track(new);
    let status = sup.status();
    assert_eq!(status["child_path"], shown(&crasher), "{status}");
    assert_eq!(status["previous_path"], shown(original), "{status}");
    // The new child becomes ready, then exits with code 4; the supervisor starts the
    // previous binary with its previous arguments.
    let status = sup.wait_for("the fallback child to run", || {
        let status = sup.try_status().ok()?;
        let pid = pid_in(&status, "child_pid")?;
        (pid != old && pid != new && status["state"] == "running").then_some(status)
    });
    let fallback = pid_in(&status, "child_pid").expect("a child");
    assert_eq!(status["child_path"], shown(original), "{status}");
    assert_eq!(
        program_args(&status),
        vec![shown(original).to_string(), "--slow-ms=1".to_string()],
        "{status}"
    );
    assert!(status["previous_path"].is_null(), "{status}");
    assert_eq!(status["reloads"], 1, "{status}");
    assert_eq!(status["failures"], 1, "{status}");
    assert_eq!(status["restarts"], 1, "{status}");
    assert_eq!(status["supervisor_pid"], sup.pid(), "{status}");
    sup.wait_for_log(&format!("falling back to {}", original.display()));
    wait_gone(new, "the crashed child");
    wait_gone(old, "the first child");
    let answer = get(addr).expect("GET after the fallback");
    assert_eq!(answer.pid, fallback);
    assert_eq!(answer.exe, shown(original));
    assert_eq!(children_of(sup.pid()), vec![fallback]);
}

#[test]
fn fallback_runs_the_previous_binary_even_after_its_file_was_deleted() {
    let env = Env::new();
    let lb_http = bin!("lb-http");
    let first = env.copy_binary(lb_http, "first");
    let second = env.copy_binary(lb_http, "second");
    let sup = env.start(&first, NO_ARGS);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let outcome = env.run(
        &second,
        &["--littleboss=reload", "--", "--crash-after-ms=1000"],
    );
    let new = reloaded(&outcome, "lbhttp", old);
    sup.track(new);
    std::fs::remove_file(&first).expect("delete the first binary");
    assert!(
        is_alive(new),
        "the new child crashed before the file was deleted; the test proves nothing"
    );
    // The supervisor's own binary is gone: ask with another binary of the same service.
    let status = sup.wait_for("the fallback child to run", || {
        let status = env.try_status_json(lb_http).ok()?;
        let pid = pid_in(&status, "child_pid")?;
        (pid != old && pid != new && status["state"] == "running").then_some(status)
    });
    let fallback = pid_in(&status, "child_pid").expect("a child");
    sup.track(fallback);
    assert_eq!(status["child_path"], shown(&first), "{status}");
    assert_eq!(status["restarts"], 1, "{status}");
    assert_eq!(status["failures"], 1, "{status}");
    let answer = get(addr).expect("GET after the fallback");
    assert_eq!(answer.pid, fallback);
    let deleted = format!("{} (deleted)", first.display());
    assert!(
        answer.exe == shown(&first) || answer.exe == deleted,
        "the fallback child runs the deleted file: {answer:?}"
    );
    let stop = env.run(lb_http, &["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0);
    wait_gone(fallback, "the fallback child");
}

// ---------------------------------------------------------------------------------------
// 5. Persist: restarts with growing delays
// ---------------------------------------------------------------------------------------

/// `PREFIX N ms` lines of `text` (`N` an integer), in order.
fn millis_after(text: &str, prefix: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| {
            let rest = &line[line.find(prefix)? + prefix.len()..];
            rest.strip_suffix(" ms")?.parse().ok()
        })
        .collect()
}

#[test]
fn persist_restarts_a_failing_program_with_growing_delays_and_stop_still_works() {
    let env = Env::new();
    let sup = env.start_nowait(bin!("lb-reload-persist"), NO_ARGS);
    // The program exits with code 5 100 ms after it starts; after the fourth restart the
    // supervisor waits 1.6 s: stop it then, while no child runs.
    let mut seen = Vec::new();
    let status = sup.wait_for("four restarts, then a wait", || {
        if let Some(exit) = sup.try_exit() {
            panic!("the supervisor exited ({exit})\n{}", sup.logs());
        }
        let status = sup.try_status().ok()?;
        let restarts = status["restarts"].as_u64()?;
        seen.push(restarts);
        (restarts >= 4 && status["child_pid"].is_null()).then_some(status)
    });
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "restarts only count up: {seen:?}"
    );
    assert_eq!(
        status["state"], "starting",
        "waiting to start it again: {status}"
    );
    let restarts = status["restarts"].as_u64().expect("restarts");
    assert!(
        status["failures"].as_u64() >= Some(restarts + 1),
        "every exit with code 5 is a failure: {status}"
    );
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(
        stop.stdout, "stopping lbpersist\nstopped lbpersist exit code 0\n",
        "{stop}"
    );
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    assert!(!env.socket("lbpersist").exists(), "the socket is removed");

    let log = sup.stderr();
    let delays = millis_after(&log, "littleboss: lbpersist: starting it again in ");
    assert!(
        delays.len() >= 4 && delays[..4] == [100, 200, 400, 800],
        "the delays double from 100 ms: {delays:?}\n{log}"
    );
    // Each child stamps its start; a gap between two starts holds the delay before the
    // second one (and the first one's run).
    let starts = millis_after(&log, " started at ");
    assert!(starts.len() > 4, "at least five children started:\n{log}");
    let gaps: Vec<u64> = starts
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    for (i, delay) in delays.iter().take(4).enumerate() {
        assert!(
            gaps[i] >= *delay,
            "start {} came {} ms after the previous one, before its {delay} ms delay: {gaps:?}",
            i + 1,
            gaps[i]
        );
    }
    assert!(
        gaps[3] > gaps[0] + 400,
        "the gaps between starts grow: {gaps:?}"
    );
    // Every child is gone.
    for line in log.lines().filter(|l| l.contains(" started at ")) {
        let pid: u32 = line
            .split_once("pid ")
            .and_then(|(_, rest)| rest.split_once(' '))
            .and_then(|(pid, _)| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        wait_gone(pid, "a persisted child");
    }
}

// ---------------------------------------------------------------------------------------
// 6, 10. One reload at a time; a stop cancels one
// ---------------------------------------------------------------------------------------

/// A reload of an `lbhttp` supervisor to a copy of `lb-reload-gate` that becomes ready
/// once the file `gate` exists, running in the background.
fn gated_reload(env: &Env, copy: &Path, gate: &Path) -> Spawned {
    let arg = format!("--ready-when={}", gate.display());
    env.spawn(copy, &["--littleboss=reload", "--", arg.as_str()])
}

/// Opens a gate: the gated new child becomes ready.
fn open_gate(gate: &Path) {
    std::fs::write(gate, b"").expect("create the gate file");
}

#[test]
fn two_reloads_at_once_one_proceeds_and_the_other_is_refused() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let gate = env.path().join("gate-file");
    let copies = [
        env.copy_binary(bin!("lb-reload-gate"), "gate-one"),
        env.copy_binary(bin!("lb-reload-gate"), "gate-two"),
    ];
    let reloads = [
        gated_reload(&env, &copies[0], &gate),
        gated_reload(&env, &copies[1], &gate),
    ];
    // Both new children would wait for the gate: whichever request came second is
    // refused while the first is under way.
    let refused = sup.wait_for("one of the two reloads to end", || {
        reloads.iter().position(|r| r.try_exit().is_some())
    });
    let proceeds = 1 - refused;
    assert_eq!(
        reloads[refused].wait_code(),
        1,
        "{}",
        reloads[refused].logs()
    );
    assert_eq!(reloads[refused].stdout(), "reloading lbhttp\n");
    let new = wait_reloading(&sup);
    let expected = format!(
        "reload of lbhttp failed: another reload is under way (new child pid {new}); try again when it has ended"
    );
    assert!(
        reloads[refused].stderr().contains(&expected),
        "expected {expected:?}\n{}",
        reloads[refused].logs()
    );
    assert!(
        reloads[proceeds].try_exit().is_none(),
        "the other reload is still waiting for its child\n{}",
        reloads[proceeds].logs()
    );
    assert_eq!(sorted(children_of(sup.pid())), sorted(vec![old, new]));
    let status = sup.status();
    assert_eq!(pid_in(&status, "child_pid"), Some(old), "{status}");
    assert_eq!(status["state"], "reloading", "{status}");
    assert_eq!(
        get(addr).expect("GET during the reload").pid,
        old,
        "the old child serves (the gated child accepts nothing before its gate opens)"
    );

    open_gate(&gate);
    assert_eq!(
        reloads[proceeds].wait_code(),
        0,
        "{}",
        reloads[proceeds].logs()
    );
    let stdout = reloads[proceeds].stdout();
    assert!(
        stdout.starts_with(&format!(
            "reloading lbhttp\nreloaded lbhttp: pid {old} -> {new} in "
        )),
        "{stdout}"
    );
    let status = sup.status();
    assert_eq!(pid_in(&status, "child_pid"), Some(new), "{status}");
    assert_eq!(status["child_path"], shown(&copies[proceeds]), "{status}");
    assert_eq!(status["previous_path"], shown(bin!("lb-http")), "{status}");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["reloads"], 1, "{status}");
    assert_eq!(status["failures"], 0, "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(reload_children_started(&sup), 1, "{}", sup.logs());
    wait_gone(old, "the old child");
    assert_eq!(
        children_of(sup.pid()),
        vec![new],
        "never a second new child"
    );
    assert_eq!(get(addr).expect("GET after the reload").pid, new);
}

#[test]
fn sighup_during_a_reload_is_refused_and_starts_no_second_child() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let gate = env.path().join("gate-file");
    let copy = env.copy_binary(bin!("lb-reload-gate"), "gate-bin");
    let reload = gated_reload(&env, &copy, &gate);
    let new = wait_reloading(&sup);
    sup.signal(Signal::HUP);
    sup.wait_for_log(&format!(
        "littleboss: lbhttp: reload refused: another reload is under way (new child pid {new})"
    ));
    assert_eq!(sorted(children_of(sup.pid())), sorted(vec![old, new]));
    assert_eq!(reload_children_started(&sup), 1, "{}", sup.logs());
    let status = sup.status();
    assert_eq!(status["state"], "reloading", "{status}");
    assert_eq!(pid_in(&status, "child_pid"), Some(old), "{status}");

    open_gate(&gate);
    assert_eq!(reload.wait_code(), 0, "{}", reload.logs());
    let status = sup.wait_running();
    assert_eq!(pid_in(&status, "child_pid"), Some(new), "{status}");
    assert_eq!(status["reloads"], 1, "{status}");
    assert_eq!(status["failures"], 0, "{status}");
    assert_eq!(reload_children_started(&sup), 1, "{}", sup.logs());
    wait_gone(old, "the old child");
    assert_eq!(children_of(sup.pid()), vec![new]);

    // The refusal left nothing behind: the next SIGHUP reloads.
    sup.signal(Signal::HUP);
    let status = sup.wait_for("a reload after the second SIGHUP", || {
        sup.try_status()
            .ok()
            .filter(|s| s["reloads"] == 2 && s["state"] == "running")
    });
    let newest = pid_in(&status, "child_pid").expect("a child");
    assert_ne!(newest, new);
    assert_eq!(status["child_path"], shown(&copy), "{status}");
}

#[test]
fn stop_during_a_reload_cancels_it_and_stops_cleanly() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let gate = env.path().join("gate never created");
    let copy = env.copy_binary(bin!("lb-reload-gate"), "gate-bin");
    let reload = gated_reload(&env, &copy, &gate);
    let new = wait_reloading(&sup);
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(
        stop.stdout, "stopping lbhttp\nstopped lbhttp exit code 0\n",
        "{stop}"
    );
    reload.assert_exit(1, "reload of lbhttp failed: cancelled: lbhttp is stopping");
    assert_eq!(reload.stdout(), "reloading lbhttp\n");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    wait_gone(old, "the old child");
    wait_gone(new, "the cancelled new child");
    assert!(!env.socket("lbhttp").exists(), "the socket is removed");
    sup.wait_for("the port to be free", || port_is_free(addr).then_some(()));
}

// ---------------------------------------------------------------------------------------
// 7. A reload that moves a listener
// ---------------------------------------------------------------------------------------

#[test]
fn reload_with_a_new_address_moves_the_listener_and_a_busy_address_fails_cleanly() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let old_addr = sup.addr("http");
    let copy = env.copy_binary(bin!("lb-http"), "lb-http-moved");

    let outcome = env.run(&copy, &["--littleboss=reload", "--http=127.0.0.1:0"]);
    let new = reloaded(&outcome, "lbhttp", old);
    sup.track(new);
    let status = sup.status();
    let new_addr = listener_addr(&status, "http").expect("http is bound");
    assert_ne!(new_addr, old_addr, "{status}");
    assert!(
        status["child_args"]
            .as_array()
            .is_some_and(|args| args.iter().any(|a| *a == format!("--http={new_addr}"))),
        "the new child got the new address: {status}"
    );
    assert_eq!(get(new_addr).expect("GET on the new address").pid, new);
    // The old address stays with the old child until it exits, then it is closed.
    wait_gone(old, "the old child");
    sup.wait_for("the old address to be closed", || {
        port_is_free(old_addr).then_some(())
    });

    // An address that cannot be bound: the reload fails before any child starts.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let busy = holder.local_addr().expect("its address");
    let outcome = env.run(&copy, &["--littleboss=reload", &format!("--http={busy}")]);
    let reason = reload_failed(&outcome, "lbhttp");
    assert_eq!(
        reason,
        format!("bind http on {busy}: address in use; to bind another address, pass --http=ADDR")
    );
    let status = sup.status();
    assert_eq!(pid_in(&status, "child_pid"), Some(new), "{status}");
    assert_eq!(listener_addr(&status, "http"), Some(new_addr), "{status}");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["reloads"], 1, "{status}");
    assert_eq!(children_of(sup.pid()), vec![new]);
    assert_eq!(get(new_addr).expect("GET after the failed move").pid, new);
    drop(holder);
}

// ---------------------------------------------------------------------------------------
// 8. Keep-alive connections across a reload
// ---------------------------------------------------------------------------------------

/// Starts `bin` supervised, opens keep-alive connections to its old child, reloads, and
/// checks that each connection's next request gets a complete response with
/// `Connection: close` from the old child (then a clean end of the connection), and
/// that a new connection reaches the new child. With `lameduck_line`, the program
/// prints `LINE: pid PID lameduck` when it winds down: the test waits for it, so the
/// request surely comes after lameduck, on a connection that was idle meanwhile.
fn keepalive_connections_are_finished(
    bin: &Path,
    service: &str,
    start_args: &[&str],
    lameduck_line: Option<&str>,
) {
    let env = Env::new();
    let copy = env.copy_binary(bin, "new");
    let sup = env.start(bin, start_args);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let mut connections: Vec<KeepAlive> = (0..3)
        .map(|_| KeepAlive::connect(addr).expect("connect"))
        .collect();
    for connection in &mut connections {
        let response = connection.get().expect("a request before the reload");
        assert_eq!(response.status, 200);
        assert!(
            !response.close,
            "kept alive before the reload: {response:?}"
        );
        assert_eq!(parse_answer(&response.body).map(|a| a.0), Some(old));
    }
    let outcome = env.run(&copy, &["--littleboss=reload"]);
    let new = reloaded(&outcome, service, old);
    sup.track(new);
    if let Some(line) = lameduck_line {
        sup.wait_for_log(&format!("{line}: pid {old} lameduck"));
    }
    for (i, connection) in connections.iter_mut().enumerate() {
        // Without the lameduck line, the old child may answer a request or two before
        // lameduck reaches it; each answer must still be complete.
        let mut requests = 0;
        loop {
            requests += 1;
            let response = connection
                .get()
                .unwrap_or_else(|e| panic!("connection {i}, request {requests}: {e}"));
            assert_eq!(response.status, 200, "{response:?}");
            assert_eq!(
                parse_answer(&response.body).map(|a| a.0),
                Some(old),
                "the old child answers on its own connections: {response:?}"
            );
            if response.close {
                break;
            }
            assert!(
                lameduck_line.is_none() && requests < 200,
                "connection {i} was not told to close after lameduck: {response:?}"
            );
        }
        connection
            .expect_clean_close()
            .unwrap_or_else(|e| panic!("connection {i} after Connection: close: {e}"));
    }
    // A new connection reaches the new child (with the lameduck line, at once: the old
    // child closed its copy of the listener before printing it).
    let response = sup.wait_for("a new connection to reach the new child", || {
        let response = KeepAlive::connect(addr)
            .and_then(|mut fresh| fresh.get())
            .unwrap_or_else(|e| panic!("a request on a new connection: {e}"));
        let pid = parse_answer(&response.body).map(|a| a.0);
        assert!(
            lameduck_line.is_none() || pid == Some(new),
            "the old child accepted after lameduck: {response:?}"
        );
        (pid == Some(new)).then_some(response)
    });
    assert!(
        !response.close,
        "the new child keeps it alive: {response:?}"
    );
    wait_gone(old, "the old child, once its connections are finished");
}

#[test]
fn keepalive_connections_of_the_old_child_are_finished_not_reset() {
    keepalive_connections_are_finished(
        bin!("lb-reload-keepalive"),
        "lbkeep",
        NO_ARGS,
        Some("lb-reload-keepalive"),
    );
}

// The http example's keep-alive connections move to the new child instead: see
// `tests/tests/handoff.rs`.

// ---------------------------------------------------------------------------------------
// 9. Status during and after a reload
// ---------------------------------------------------------------------------------------

#[test]
fn status_during_and_after_a_reload() {
    let env = Env::new();
    let lb_http = bin!("lb-http");
    let sup = env.start(lb_http, NO_ARGS);
    let old = sup.child_pid();
    let gate = env.path().join("gate-file");
    let copy = env.copy_binary(bin!("lb-reload-gate"), "gate-bin");
    let reload = gated_reload(&env, &copy, &gate);
    let new = wait_reloading(&sup);

    // During: the old child is the one shown, the new one is not counted yet.
    let status = sup.status();
    assert_eq!(status["state"], "reloading", "{status}");
    assert_eq!(pid_in(&status, "child_pid"), Some(old), "{status}");
    assert_eq!(status["child_path"], shown(lb_http), "{status}");
    assert!(status["previous_path"].is_null(), "{status}");
    assert_eq!(status["reloads"], 0, "{status}");
    assert_eq!(status["failures"], 0, "{status}");
    let text = sup.run(&["--littleboss=status"]);
    assert_eq!(text.code(), Some(0), "{text}");
    assert!(
        text.stdout
            .contains(&format!("(reloading; protocol {})", littleboss::PROTOCOL)),
        "{text}"
    );
    assert!(
        text.stdout.contains(&format!("  child pid {old} started ")),
        "{text}"
    );

    // After: the new child, the previous binary, one reload (and `failures` failures).
    let status_after = |failures: u64| {
        let status = sup.status();
        assert_eq!(status["state"], "running", "{status}");
        assert_eq!(pid_in(&status, "child_pid"), Some(new), "{status}");
        assert_eq!(status["child_path"], shown(&copy), "{status}");
        assert_eq!(status["previous_path"], shown(lb_http), "{status}");
        assert_eq!(status["reloads"], 1, "{status}");
        assert_eq!(status["failures"], failures, "{status}");
        status
    };
    open_gate(&gate);
    assert_eq!(reload.wait_code(), 0, "{}", reload.logs());
    let stdout = reload.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0], "reloading lbhttp");
    let ms = lines[1]
        .strip_prefix(&format!("reloaded lbhttp: pid {old} -> {new} in "))
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|ms| ms.parse::<u64>().ok());
    assert!(ms.is_some(), "{stdout}");
    let status = status_after(0);
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(
        program_args(&status),
        vec![
            shown(&copy).to_string(),
            format!("--ready-when={}", gate.display())
        ],
        "the new child's arguments are the reload's: {status}"
    );
    let text = sup.run(&["--littleboss=status"]);
    for line in [
        "(running; protocol ".to_string(),
        format!("  child pid {new} started "),
        format!("  binary {}\n", copy.display()),
        format!("  previous binary {}\n", lb_http.display()),
        "  reloads 1, failures 0, restarts 0\n".to_string(),
    ] {
        assert!(text.stdout.contains(&line), "{line:?} in:\n{text}");
    }

    // A failed reload afterwards counts a failure and changes nothing else.
    let crasher = env.copy_binary(lb_http, "exits");
    let outcome = env.run(&crasher, &["--littleboss=reload", "--", "--exit-at-start"]);
    reload_failed(&outcome, "lbhttp");
    status_after(1);
}

// ---------------------------------------------------------------------------------------
// A reload while a persistent program waits to be started again
// ---------------------------------------------------------------------------------------

#[test]
fn reload_during_a_persist_backoff_replaces_the_waiting_program() {
    let env = Env::new();
    let persist = bin!("lb-reload-persist");
    let sup = env.start_nowait(persist, NO_ARGS);
    // After the third restart the supervisor waits 800 ms before the next one.
    let status = sup.wait_for("three restarts, then a wait", || {
        if let Some(exit) = sup.try_exit() {
            panic!("the supervisor exited ({exit})\n{}", sup.logs());
        }
        let status = sup.try_status().ok()?;
        (status["restarts"].as_u64()? >= 3 && status["child_pid"].is_null()).then_some(status)
    });
    let restarts = status["restarts"].as_u64().expect("restarts");
    // A binary that stays up: it is ready after the settle time (250 ms).
    let copy = env.copy_binary(persist, "stays-up");
    let outcome = env.run(
        &copy,
        &["--littleboss=reload", "--", "--exit-after-ms=60000"],
    );
    assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
    let prefix = "reloading lbpersist\nreloaded lbpersist: pid none -> ";
    let new: u32 = outcome
        .stdout
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(pid, _)| pid.parse().ok())
        .unwrap_or_else(|| panic!("expected {prefix:?}NEW ...:\n{outcome}"));
    sup.track(new);
    // The reloaded child serves from now on: the program that was waiting for its
    // backoff is not started any more. Watch for longer than the longest backoff left.
    let watch_until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < watch_until {
        let status = sup.status();
        assert_eq!(
            pid_in(&status, "child_pid"),
            Some(new),
            "the reloaded child stays the serving one: {status}\n{}",
            sup.logs()
        );
        assert_eq!(
            status["restarts"], restarts,
            "no restart after the reload: {status}"
        );
        assert_eq!(status["child_path"], shown(&copy), "{status}");
        assert_eq!(children_of(sup.pid()), vec![new], "{}", sup.logs());
        std::thread::sleep(littleboss_tests::POLL);
    }
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    wait_gone(new, "the reloaded child");
}
