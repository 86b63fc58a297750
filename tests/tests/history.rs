//! The journal: `--littleboss=history` prints one line per reload, upgrade, restart...
//! (oldest first) and `--littleboss=history-json` the same events with every detail.
//! A successful reload, a failed one and an upgrade are each journalled, in order, with
//! their pids, outcome, steps and reason; the events and their sequence numbers cross
//! the upgrade; a reload with idle keep-alive connections says how many it moved; and a
//! supervisor that speaks protocol 4 only refuses the command, naming its version.
//!
//! Helper program: `lb-metrics` (service `lbmetrics`, or `--name=NAME`; see its module
//! docs). The tests that upgrade keep the default name: the upgrade's probe runs the
//! new binary without arguments, so it names itself `lbmetrics` whatever the
//! supervisor's child was told.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use littleboss_tests::release_support::{TEST_PROTOCOLS, assert_ok};
use littleboss_tests::reload_support::KeepAlive;
use littleboss_tests::{Env, NO_ARGS, Outcome, Supervisor, Value, bin, copy_binary};

/// A client of service `name`: a script in `env` that runs `lb-metrics` with the
/// arguments it is given and `--name=NAME` (a reload's `-- ARGS` get it too, so the new
/// child is the same service). Written elsewhere and copied into place by `cp`, so that
/// no process of this test ever holds it open for writing (see [`copy_binary`]).
fn client(env: &Env, name: &str) -> PathBuf {
    let source = env.path().join(format!("{name}.sh.in"));
    let script = format!(
        "#!/bin/sh\nexec '{}' \"$@\" --name={name}\n",
        bin!("lb-metrics").display()
    );
    std::fs::write(&source, script).expect("write the client script");
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let target = env.path().join(name);
    copy_binary(&source, &target);
    target
}

/// Starts `lb-metrics` as service `name` (with `vars` in its environment) and waits until
/// its child is ready; its client commands run [`client`].
fn start_named<'e>(env: &'e Env, name: &str, vars: &[(&str, &str)]) -> Supervisor<'e> {
    let arg = format!("--name={name}");
    let sup = env
        .start_with(bin!("lb-metrics"), &[arg.as_str()], vars)
        .with_client(&client(env, name));
    sup.wait_running();
    sup
}

/// Runs `--littleboss=MODE ARGS` with `bin` and checks that it exits 0.
fn ok(sup: &Supervisor<'_>, env: &Env, bin: &Path, mode: &str, args: &[&str]) -> Outcome {
    let mut all = vec![format!("--littleboss={mode}")];
    all.extend(args.iter().map(|a| a.to_string()));
    let outcome = env.run(bin, &all);
    assert_ok(sup, mode, &outcome);
    outcome
}

/// `history` of the supervisor: its lines.
fn history(sup: &Supervisor<'_>) -> Vec<String> {
    let outcome = sup.run(&["--littleboss=history"]);
    assert_ok(sup, "history", &outcome);
    assert_eq!(outcome.stderr, "", "{outcome}");
    outcome.stdout.lines().map(str::to_string).collect()
}

/// `history-json` of the supervisor, checked for its shape (`omitted` 0, every key of
/// every event, `seq` ascending); its events.
fn history_json(sup: &Supervisor<'_>) -> Vec<Value> {
    let outcome = sup.run(&["--littleboss=history-json"]);
    assert_ok(sup, "history-json", &outcome);
    let json: Value = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("history-json printed invalid JSON ({e}): {outcome}"));
    assert_eq!(json["omitted"], 0, "{json}");
    let events = json["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {json}"))
        .clone();
    for event in &events {
        has_keys(
            event,
            &[
                "seq",
                "kind",
                "outcome",
                "started",
                "duration_ms",
                "old_pid",
                "new_pid",
                "path",
                "reason",
                "steps",
                "connections",
                "count",
                "state",
            ],
        );
        has_keys(
            &event["steps"],
            &["opened_ms", "hello_ms", "ready_ms", "old_gone_ms"],
        );
        has_keys(&event["connections"], &["moved", "moved_back", "closed"]);
        let started = event["started"].as_str().unwrap_or_default();
        assert!(
            started.len() == "2026-12-05T00:09:41.123Z".len()
                && started.as_bytes()[10] == b'T'
                && started.ends_with('Z'),
            "{event}"
        );
        assert!(event["duration_ms"].is_u64(), "{event}");
    }
    let seqs: Vec<u64> = events.iter().map(seq).collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "seq does not ascend: {seqs:?}"
    );
    events
}

/// Panics unless `object` has each of `keys` (null or not).
fn has_keys(object: &Value, keys: &[&str]) {
    let map = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"));
    for key in keys {
        assert!(map.contains_key(*key), "no {key:?} in {object}");
    }
}

fn seq(event: &Value) -> u64 {
    event["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {event}"))
}

/// The line `history` prints for `event`, as its JSON says it: the time it started (to
/// the second), then `KIND OLD -> NEW OUTCOME in N ms`, then `, moved N connections`
/// (and the like), `, took N bytes of state` (and `and N fds`) and `: REASON` if there
/// are any.
fn line_of(event: &Value) -> String {
    let started = event["started"].as_str().expect("started");
    let second = &started[..started.find('.').expect("milliseconds in started")];
    let mut line = format!(
        "{second}Z {} {} -> {} {} in {} ms",
        event["kind"].as_str().expect("kind"),
        event["old_pid"],
        event["new_pid"],
        event["outcome"].as_str().expect("outcome"),
        event["duration_ms"]
    );
    for (key, what) in [
        ("moved", "moved"),
        ("moved_back", "moved back"),
        ("closed", "closed"),
    ] {
        match event["connections"][key].as_u64() {
            Some(0) | None => {}
            Some(1) => line.push_str(&format!(", {what} 1 connection")),
            Some(n) => line.push_str(&format!(", {what} {n} connections")),
        }
    }
    if let Some(bytes) = event["state"]["bytes"].as_u64() {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        line.push_str(&format!(", took {bytes} byte{} of state", plural(bytes)));
        if let Some(fds) = event["state"]["fds"].as_u64().filter(|n| *n > 0) {
            line.push_str(&format!(" and {fds} fd{}", plural(fds)));
        }
    }
    if let Some(reason) = event["reason"].as_str() {
        line.push_str(&format!(": {reason}"));
    }
    line
}

/// Panics unless `event` is of `kind` with `outcome`.
#[track_caller]
fn is(event: &Value, kind: &str, outcome: &str) {
    assert_eq!(
        (event["kind"].as_str(), event["outcome"].as_str()),
        (Some(kind), Some(outcome)),
        "{event}"
    );
}

/// An event's old and new pids.
fn pids(event: &Value) -> (u64, u64) {
    let pid = |key: &str| {
        event[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {event}"))
    };
    (pid("old_pid"), pid("new_pid"))
}

/// A path as the journal shows it.
fn shown(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// What of an event stays put once it is journalled (the old child's exit may fill in
/// `steps.old_gone_ms` later).
fn settled(event: &Value) -> Value {
    serde_json::json!([
        event["seq"],
        event["kind"],
        event["outcome"],
        event["started"],
        event["duration_ms"],
        event["old_pid"],
        event["new_pid"],
        event["path"],
        event["reason"],
    ])
}

#[test]
fn a_reload_a_failed_reload_and_an_upgrade_are_journalled_in_order_across_the_upgrade() {
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-metrics"), "one");
    let two = env.copy_binary(bin!("lb-metrics"), "two");
    let sup = env.start(&one, NO_ARGS);
    let first = u64::from(sup.child_pid());
    assert_eq!(
        history(&sup),
        Vec::<String>::new(),
        "a new journal is empty"
    );

    ok(&sup, &env, &one, "reload", &[]);
    let second = sup.wait_running()["child_pid"].as_u64().expect("a pid");
    let failed = env.run(&one, &["--littleboss=reload", "--", "--fail-start"]);
    assert_eq!(failed.code(), Some(1), "{failed}");
    let reason = failed
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("reload of lbmetrics failed: "))
        .unwrap_or_else(|| panic!("no reason in {failed}"))
        .to_string();
    let before = history_json(&sup);
    assert_eq!(before.len(), 2, "{before:#?}");

    ok(&sup, &env, &two, "upgrade", &[]);
    let third = sup.wait_running()["child_pid"].as_u64().expect("a pid");
    let events = history_json(&sup);
    assert_eq!(events.len(), 3, "{events:#?}");

    let (reload, fail, upgrade) = (&events[0], &events[1], &events[2]);
    is(reload, "reload", "succeeded");
    assert_eq!(pids(reload), (first, second), "{}", reload);
    assert_eq!(reload["path"], shown(&one), "{reload}");
    assert!(reload["reason"].is_null(), "{reload}");
    assert!(reload["count"].is_null(), "{reload}");
    for step in ["opened_ms", "hello_ms", "ready_ms"] {
        assert!(reload["steps"][step].is_u64(), "{step} unset: {reload}");
    }
    assert!(
        reload["steps"]["ready_ms"].as_u64() <= reload["duration_ms"].as_u64(),
        "{reload}"
    );

    is(fail, "reload", "failed");
    assert_eq!(fail["old_pid"], second, "{fail}");
    let failed_pid = fail["new_pid"].as_u64().expect("the failed child's pid");
    assert!(failed_pid != second && failed_pid != third, "{fail}");
    let why = fail["reason"].as_str().expect("a reason");
    assert!(
        why.starts_with(&format!("new child pid {failed_pid} exited with code 3")),
        "{fail}"
    );
    assert_eq!(why, reason, "the journal says what the client was told");
    assert!(fail["steps"]["ready_ms"].is_null(), "{fail}");
    assert!(fail["steps"]["old_gone_ms"].is_null(), "{fail}");
    assert_eq!(fail["path"], shown(&one), "{fail}");

    is(upgrade, "upgrade", "succeeded");
    assert_eq!(pids(upgrade), (second, third), "{}", upgrade);
    assert_eq!(upgrade["path"], shown(&two), "{upgrade}");
    assert!(upgrade["reason"].is_null(), "{upgrade}");

    // The events journalled before the upgrade crossed it, seq and all.
    assert_eq!(
        before.iter().map(settled).collect::<Vec<_>>(),
        events[..2].iter().map(settled).collect::<Vec<_>>()
    );

    let lines = history(&sup);
    assert_eq!(
        lines,
        events.iter().map(line_of).collect::<Vec<_>>(),
        "{events:#?}"
    );
    assert!(
        lines[0].ends_with(&format!(
            " reload {first} -> {second} succeeded in {} ms",
            reload["duration_ms"]
        )),
        "{lines:#?}"
    );
    assert!(
        lines[1].contains(&format!(
            " reload {second} -> {failed_pid} failed in {} ms: new child pid {failed_pid} exited with code 3",
            fail["duration_ms"]
        )),
        "{lines:#?}"
    );
    assert!(
        lines[2].ends_with(&format!(
            " upgrade {second} -> {third} succeeded in {} ms",
            upgrade["duration_ms"]
        )),
        "{lines:#?}"
    );

    // The journal goes on where it was: the next event gets the next seq.
    ok(&sup, &env, &two, "reload", &[]);
    let fourth = sup.wait_running()["child_pid"].as_u64().expect("a pid");
    let after = history_json(&sup);
    assert_eq!(after.len(), 4, "{after:#?}");
    assert_eq!(seq(&after[3]), seq(upgrade) + 1, "{after:#?}");
    is(&after[3], "reload", "succeeded");
    assert_eq!(pids(&after[3]), (third, fourth), "{}", after[3]);
    assert_eq!(after[3]["path"], shown(&two));
    assert_eq!(
        events.iter().map(settled).collect::<Vec<_>>(),
        after[..3].iter().map(settled).collect::<Vec<_>>()
    );
    assert_eq!(history(&sup).len(), 4);
    assert_ok(&sup, "stop", &env.run(&two, &["--littleboss=stop"]));
}

#[test]
fn a_reload_with_idle_keep_alive_connections_says_how_many_it_moved() {
    let env = Env::new();
    let sup = start_named(&env, "lbhistmoved", &[]);
    let addr = sup.addr("http");
    let old = u64::from(sup.child_pid());
    let expected = format!("pid {old}\n");
    // Three connections, each answered once by the old child, then idle.
    let mut connections: Vec<KeepAlive> = (0..3)
        .map(|_| {
            let mut connection = KeepAlive::connect(addr).expect("connect");
            let response = connection.get().expect("GET /");
            assert_eq!((response.status, response.body.as_str()), (200, &*expected));
            assert!(!response.close);
            connection
        })
        .collect();

    assert_ok(&sup, "reload", &sup.run(&["--littleboss=reload"]));
    let new = u64::from(sup.child_pid());
    assert_ne!(new, old);
    // Each connection is the new child's now: its next request is answered there.
    for connection in &mut connections {
        let response = connection.get().expect("GET / after the reload");
        assert_eq!(
            (response.status, response.body),
            (200, format!("pid {new}\n")),
            "{}",
            sup.logs()
        );
    }

    let events = history_json(&sup);
    assert_eq!(events.len(), 1, "{events:#?}");
    let reload = &events[0];
    is(reload, "reload", "succeeded");
    assert_eq!(pids(reload), (old, new), "{}", reload);
    let moved = reload["connections"]["moved"].as_u64().expect("moved");
    assert!(moved > 0, "{reload}");
    assert_eq!(moved, 3, "every idle connection moved: {reload}");
    assert_eq!(reload["connections"]["closed"], 0, "{reload}");
    assert_eq!(reload["connections"]["moved_back"], 0, "{reload}");

    let lines = history(&sup);
    assert_eq!(lines, vec![line_of(reload)]);
    assert!(
        lines[0].ends_with(&format!(
            " reload {old} -> {new} succeeded in {} ms, moved {moved} connections",
            reload["duration_ms"]
        )),
        "{lines:#?}"
    );
    let metrics = sup.run(&["--littleboss=metrics"]);
    assert_ok(&sup, "metrics", &metrics);
    assert!(
        metrics
            .stdout
            .lines()
            .any(|l| l == format!("littleboss_connections_moved_total {moved}")),
        "{metrics}"
    );
    drop(connections);
    assert_ok(&sup, "stop", &sup.run(&["--littleboss=stop"]));
}

#[test]
fn history_against_a_supervisor_of_protocol_4_says_it_speaks_protocol_4() {
    let env = Env::new();
    let sup = start_named(&env, "lbhistp4", &[(TEST_PROTOCOLS, "1-4")]);
    let status = sup.status();
    assert_eq!(status["protocols"], serde_json::json!([1, 4]), "{status}");
    for mode in ["history", "history-json", "metrics"] {
        let outcome = sup.run(&[format!("--littleboss={mode}")]);
        assert_eq!(outcome.code(), Some(1), "{mode}: {outcome}");
        assert_eq!(outcome.stdout, "", "{mode}: {outcome}");
        assert!(
            outcome
                .stderr
                .starts_with("lbhistp4: the running supervisor speaks protocol 4"),
            "{mode}: {outcome}"
        );
    }
    // It still serves, and the client's other commands still work.
    assert_eq!(sup.status()["state"], "running");
    assert_ok(&sup, "stop", &sup.run(&["--littleboss=stop"]));
}
