//! State transfer: the process a reload replaces gives its state (bytes and named fds)
//! to the new one, through the supervisor, and keeps it until the reload is committed.
//!
//! A state of 1 MiB and three fds reaches the new process whole and is given on again at
//! the next reload; the giver learns the transfer was committed; `status-json` says how
//! many bytes the serving child took; the supervisor keeps no fd of it. A reload that
//! fails changes nothing (the next one takes the same state). An answer that does not
//! come within the new process's `state_timeout` is an error to it, and it starts cold.
//! A program that offers nothing, or declines, gives none; one over the limits gets an
//! error, and so does its successor. A later snapshot reaches the successor once. A
//! typed value carries its format version, and a mismatch names both. A predecessor
//! or a supervisor of protocol 5 (the release before) gives no state, and the reload
//! proceeds.
//!
//! Bad input from real processes (`lb-fake-child`, speaking protocol 6 by hand): a
//! predecessor that exits halfway through giving, a state's file unsealed or shorter
//! than its head says, a new child that never reads its channel. Each is an error to
//! the program that can act on it; the new child starts cold, or the old one keeps its
//! state; neither the supervisor nor the new child keeps anything of it.
//!
//! Helper programs: `lb-state` (service `lbstate`, `state_timeout = "3s"`; see its
//! module docs for its switches and the lines it prints), and `lb-http --take-state`
//! with the previous release's `lb-http`.

use std::path::Path;

use littleboss_tests::attack_support::wire::{self, Response};
use littleboss_tests::attack_support::{fd_count, raw};
use littleboss_tests::release_support::{RELEASE_EC17274, TEST_PROTOCOLS, assert_ok};
use littleboss_tests::{Env, NO_ARGS, Supervisor, bin};

/// The pattern `lb-state` makes for a state first made by `pid`, summed.
fn pattern_sum(pid: u32, len: usize) -> u64 {
    (0..len)
        .map(|i| u64::from((i as u32).wrapping_mul(31).wrapping_add(pid) as u8))
        .sum()
}

/// Starts `lb-state` with `args` and waits until its child serves; its pid.
fn start<'e>(env: &'e Env, args: &[&str]) -> (Supervisor<'e>, u32) {
    let sup = env.start(bin!("lb-state"), args);
    sup.wait_running();
    let pid = sup.child_pid();
    sup.wait_for_log(&format!("pid {pid} serving http"));
    (sup, pid)
}

/// Reloads with `args` for the new child and checks it succeeded; the new child's pid.
fn reload(sup: &Supervisor<'_>, args: &[&str]) -> u32 {
    let mut all = vec!["--littleboss=reload"];
    if !args.is_empty() {
        all.push("--");
        all.extend_from_slice(args);
    }
    let outcome = sup.run(&all);
    assert_ok(sup, "reload", &outcome);
    sup.child_pid()
}

/// What the supervisor's fds are, by where they lead (`/proc/PID/fd`).
fn fd_targets(pid: u32) -> Vec<String> {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    targets
}

/// Waits until the supervisor holds as many fds as `before`, none of them a state's
/// file or fd (a memfd, or an unlinked file).
fn wait_fds(sup: &Supervisor<'_>, before: usize) {
    sup.wait_for(
        &format!("the supervisor back at {before} fds, none of a state"),
        || {
            let targets = fd_targets(sup.pid());
            let kept = targets
                .iter()
                .any(|t| t.contains("memfd:") || t.ends_with("(deleted)"));
            (fd_count(sup.pid()) == Some(before) && !kept).then_some(())
        },
    );
}

#[test]
fn a_reload_moves_the_state_with_its_fds_and_the_giver_learns_it_was_committed() {
    let env = Env::new();
    let (sup, first) = start(&env, &["--bytes=1048576", "--fds=3"]);
    let second = reload(&sup, &[]);
    assert_ne!(second, first);
    let sum = pattern_sum(first, 1 << 20);
    let fds = format!("fd0=fd0 of pid {first},fd1=fd1 of pid {first},fd2=fd2 of pid {first}");
    sup.wait_for_log(&format!(
        "pid {second} took 1048576 bytes sum {sum} fds [{fds}] from {first}"
    ));
    sup.wait_for_log(&format!(
        "pid {first} gave 1048576 bytes and 3 fds to {second}"
    ));
    sup.wait_for_log(&format!("pid {first} outcome committed"));
    let status = sup.status();
    assert_eq!(status["last_reload_state_bytes"], 1_048_576, "{status}");
    // Once the old child is gone, the supervisor's fds are what they will be after
    // every reload (the previous binary's included), and none is of the state.
    sup.wait_for_log(&format!("old child pid {first} exited"));
    let before = fd_count(sup.pid()).expect("the supervisor's fds");
    wait_fds(&sup, before);
    // Given on again, whole: the state first made survives any number of reloads.
    let third = reload(&sup, &[]);
    sup.wait_for_log(&format!(
        "pid {third} took 1048576 bytes sum {sum} fds [{fds}] from {second}"
    ));
    sup.wait_for_log(&format!("pid {second} outcome committed"));
    sup.wait_for_log(&format!("old child pid {second} exited"));
    wait_fds(&sup, before);
    // The history says what moved.
    let history = sup.run(&["--littleboss=history"]);
    assert_ok(&sup, "history", &history);
    assert!(
        history.stdout.contains("1048576 bytes of state"),
        "{}",
        history.stdout
    );
}

#[test]
fn a_failed_reload_changes_nothing_and_the_next_child_takes_the_same_state() {
    let env = Env::new();
    let (sup, first) = start(&env, &["--bytes=4096", "--fds=1"]);
    let outcome = sup.run(&["--littleboss=reload", "--", "--exit-after-take"]);
    assert_ne!(outcome.code(), Some(0), "the reload must fail: {outcome}");
    sup.wait_for_log(&format!("pid {first} outcome not committed"));
    assert_eq!(sup.child_pid(), first, "the old child serves on");
    let next = reload(&sup, &[]);
    let sum = pattern_sum(first, 4096);
    sup.wait_for_log(&format!(
        "pid {next} took 4096 bytes sum {sum} fds [fd0=fd0 of pid {first}] from {first}"
    ));
    sup.wait_for_log(&format!("pid {first} outcome committed"));
}

#[test]
fn an_answer_that_does_not_come_in_time_is_an_error_and_the_new_child_starts_cold() {
    let env = Env::new();
    let (sup, first) = start(&env, &["--give-after-ms=3500"]);
    let second = reload(&sup, &[]);
    let line = sup.wait_for_log(&format!("pid {second} take_state failed: "));
    assert!(
        line.contains(&format!("pid {first}, did not give its state within 3")),
        "{line}"
    );
    // Its late answer is refused; nothing was committed.
    sup.wait_for(&format!("pid {first}'s late answer refused"), || {
        let logs = sup.stderr();
        (logs.contains(&format!("pid {first} give failed: "))
            || logs.contains(&format!("pid {first} outcome not committed")))
        .then_some(())
    });
    assert!(
        !sup.stderr()
            .contains(&format!("pid {first} outcome committed")),
        "{}",
        sup.logs()
    );
    assert_eq!(
        sup.status()["last_reload_state_bytes"],
        serde_json::Value::Null
    );
}

#[test]
fn a_program_that_offers_nothing_or_declines_gives_no_state() {
    let env = Env::new();
    let (sup, _) = start(&env, &["--no-offer"]);
    let second = reload(&sup, &["--decline"]);
    sup.wait_for_log(&format!("pid {second} took none"));
    let third = reload(&sup, &[]);
    sup.wait_for_log(&format!("pid {second} declined {third}"));
    sup.wait_for_log(&format!("pid {third} took none"));
}

#[test]
fn a_state_over_the_limits_is_an_error_to_both_programs() {
    let env = Env::new();
    let (sup, first) = start(&env, &["--fds=1025"]);
    let second = reload(&sup, &[]);
    let gave = sup.wait_for_log(&format!("pid {first} give failed: "));
    assert!(gave.contains("1024"), "{gave}");
    let took = sup.wait_for_log(&format!("pid {second} take_state failed: "));
    assert!(took.contains("1024"), "{took}");
    assert_eq!(sup.child_pid(), second, "the reload goes on, cold");
}

#[test]
fn a_later_snapshot_reaches_the_successor_once() {
    let env = Env::new();
    let (sup, first) = start(&env, &["--update"]);
    let second = reload(&sup, &[]);
    sup.wait_for_log(&format!("pid {first} gave a later snapshot of 32 bytes"));
    let sum = pattern_sum(first ^ 0x5a5a, 32);
    sup.wait_for_log(&format!(
        "pid {second} got a later snapshot of 32 bytes sum {sum}"
    ));
}

#[test]
fn a_typed_value_carries_its_format_version_and_a_mismatch_names_both() {
    let env = Env::new();
    let (sup, _) = start(&env, &["--typed=1"]);
    let second = reload(&sup, &["--typed=1"]);
    sup.wait_for_log(&format!("pid {second} took value 1"));
    let third = reload(&sup, &["--typed=2"]);
    let line = sup.wait_for_log(&format!("pid {third} take_value failed: "));
    assert!(line.contains('1') && line.contains('2'), "{line}");
}

#[test]
fn a_predecessor_or_a_supervisor_of_protocol_5_gives_no_state_and_the_reload_proceeds() {
    // This release's supervisor; a child of the release before, then one of this
    // release that asks for its state.
    let env = Env::new();
    let previous = env.copy_binary(&RELEASE_EC17274.build(bin!("lb-http")), "previous");
    let this = env.copy_binary(bin!("lb-http"), "this");
    let sup = env.start(&this, NO_ARGS);
    sup.wait_running();
    assert_ok(
        &sup,
        "reload to the previous release",
        &env.run(&previous, &["--littleboss=reload"]),
    );
    let outcome = env.run(&this, &["--littleboss=reload", "--", "--take-state"]);
    assert_ok(&sup, "reload back", &outcome);
    let pid = sup.child_pid();
    sup.wait_for_log(&format!("lb-http: pid {pid} took no state"));
    // A supervisor that speaks protocol 5 at most: its children never ask.
    let env = Env::new();
    let sup = env.start_with(
        bin!("lb-http"),
        &["--take-state"],
        &[(TEST_PROTOCOLS, "1-5")],
    );
    sup.wait_running();
    sup.wait_for_log(&format!("lb-http: pid {} took no state", sup.child_pid()));
    let outcome = sup.run(&["--littleboss=reload", "--", "--take-state"]);
    assert_ok(&sup, "reload", &outcome);
    sup.wait_for_log(&format!("lb-http: pid {} took no state", sup.child_pid()));
}

/// Starts `lb-state` with `args`, its children free to be `lb-fake-child` of the same
/// service, and waits until its child serves; its pid.
fn start_with_fakes<'e>(env: &'e Env, args: &[&str]) -> (Supervisor<'e>, u32) {
    let sup = env.start_with(bin!("lb-state"), args, &[("LB_FAKE_CHILD_NAME", "lbstate")]);
    sup.wait_running();
    let pid = sup.child_pid();
    sup.wait_for_log(&format!("pid {pid} serving http"));
    (sup, pid)
}

/// A hand-encoded reload of `sup` to `path` with `args` (its first the program's
/// name): the new child's pid, or the reason the reload failed.
fn raw_reload(env: &Env, sup: &Supervisor<'_>, path: &Path, args: &[&str]) -> Result<u32, String> {
    let path = path.to_str().expect("a UTF-8 path").as_bytes();
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let request = wire::reload_request(path, Some(&args), &[]);
    let response = raw::ask(&env.socket("lbstate"), &request)
        .unwrap_or_else(|e| panic!("no answer to the reload: {e}\n{}", sup.logs()));
    match response {
        Response::Reloaded { new_pid, .. } => {
            sup.track(new_pid);
            Ok(new_pid)
        }
        Response::Failed { reason } => Err(reason),
        other => panic!("an answer that is no reload's: {other:?}\n{}", sup.logs()),
    }
}

/// Reloads `sup` to `lb-fake-child MODE`, which must become the serving child.
fn reload_to_fake(env: &Env, sup: &Supervisor<'_>, mode: &str) -> u32 {
    let fake = raw_reload(env, sup, bin!("lb-fake-child"), &["lb-fake-child", mode])
        .unwrap_or_else(|reason| panic!("{mode}: the reload failed: {reason}\n{}", sup.logs()));
    sup.wait_for_log(&format!("lb-fake-child: pid {fake} sending {mode}"));
    fake
}

/// Reloads `sup` back to `lb-state` with `args`, which must become the serving child.
fn reload_to_lb_state(env: &Env, sup: &Supervisor<'_>, args: &[&str]) -> u32 {
    let mut all = vec!["lb-state"];
    all.extend_from_slice(args);
    raw_reload(env, sup, bin!("lb-state"), &all)
        .unwrap_or_else(|reason| panic!("the reload to lb-state failed: {reason}\n{}", sup.logs()))
}

/// What `pid` holds of a state: its fds and mappings of a memfd.
fn memfds_of(pid: u32) -> Vec<String> {
    let mut held: Vec<String> = fd_targets(pid)
        .into_iter()
        .filter(|t| t.contains("memfd:"))
        .collect();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    held.extend(
        maps.lines()
            .filter(|l| l.contains("memfd:"))
            .map(String::from),
    );
    held
}

#[test]
fn a_predecessor_that_exits_halfway_through_giving_leaves_the_new_child_cold_and_nothing_open() {
    let env = Env::new();
    let (sup, first) = start_with_fakes(&env, &["--bytes=64"]);
    let fake = reload_to_fake(&env, &sup, "state-half");
    sup.wait_for_log(&format!("old child pid {first} exited"));
    let before = fd_count(sup.pid()).expect("the supervisor's fds");
    // The fake gives the head of a state with its file, then exits before the 2 fds
    // it announced.
    let next = reload_to_lb_state(&env, &sup, &["--bytes=64"]);
    sup.wait_for_log(&format!("lb-fake-child: pid {fake} exiting halfway"));
    let line = sup.wait_for_log(&format!("pid {next} take_state failed: "));
    assert!(
        line.contains("exited before it had given its state"),
        "{line}\n{}",
        sup.logs()
    );
    sup.wait_for_log(&format!("pid {next} serving http"));
    assert_eq!(sup.child_pid(), next, "the new child serves, cold");
    assert_eq!(
        memfds_of(next),
        Vec::<String>::new(),
        "the new child keeps nothing of it"
    );
    wait_fds(&sup, before);
    assert_eq!(
        sup.status()["last_reload_state_bytes"],
        serde_json::Value::Null
    );
}

#[test]
fn a_state_file_unsealed_or_shorter_than_its_head_says_is_refused_by_the_new_child() {
    let env = Env::new();
    let (sup, first) = start_with_fakes(&env, &["--bytes=64"]);
    let mut old = first;
    for (mode, said) in [
        ("state-unsealed", "not sealed against writing"),
        ("state-short", "holds 8 bytes, the message said 16"),
    ] {
        let fake = reload_to_fake(&env, &sup, mode);
        sup.wait_for_log(&format!("old child pid {old} exited"));
        let before = fd_count(sup.pid()).expect("the supervisor's fds");
        let next = reload_to_lb_state(&env, &sup, &["--bytes=64"]);
        sup.wait_for_log(&format!("lb-fake-child: pid {fake} gave a bad state"));
        let line = sup.wait_for_log(&format!("pid {next} take_state failed: "));
        assert!(line.contains(said), "{mode}: {line}\n{}", sup.logs());
        sup.wait_for_log(&format!("pid {next} serving http"));
        sup.wait_for_log(&format!(
            "lb-fake-child: pid {fake} got lameduck; exiting 0"
        ));
        // It exits with the supervisor's last word (`StateDone`) unread: that resets
        // its channel, which is its end, not a fault of its own.
        sup.wait_for_log(&format!("old child pid {fake} exited with code 0"));
        assert_eq!(
            memfds_of(next),
            Vec::<String>::new(),
            "{mode}: nothing kept"
        );
        wait_fds(&sup, before);
        old = next;
    }
}

#[test]
fn a_new_child_that_never_reads_its_channel_fails_and_the_old_one_keeps_its_state() {
    let env = Env::new();
    let (sup, first) = start_with_fakes(&env, &["--bytes=1048576", "--fds=3"]);
    let before = fd_count(sup.pid()).expect("the supervisor's fds");
    // It asks, is sent the state it never reads, and is never ready.
    let failed = raw_reload(
        &env,
        &sup,
        bin!("lb-fake-child"),
        &["lb-fake-child", "state-deaf"],
    )
    .expect_err("a child that is never ready fails its reload");
    assert!(failed.contains("ready"), "{failed}");
    sup.wait_for_log(&format!("pid {first} gave 1048576 bytes and 3 fds to "));
    sup.wait_for_log(&format!("pid {first} outcome not committed"));
    assert_eq!(sup.child_pid(), first, "the old child serves on");
    wait_fds(&sup, before);
    // The next new child takes the state as it was.
    let next = reload(&sup, &[]);
    let sum = pattern_sum(first, 1 << 20);
    sup.wait_for_log(&format!(
        "pid {next} took 1048576 bytes sum {sum} fds [fd0=fd0 of pid {first},fd1=fd1 of pid {first},fd2=fd2 of pid {first}] from {first}"
    ));
    sup.wait_for_log(&format!("pid {first} outcome committed"));
}

#[test]
fn a_state_given_though_nobody_asked_is_refused_logged_and_closed() {
    let env = Env::new();
    let (sup, _) = start_with_fakes(&env, &["--bytes=64"]);
    // Once reloaded, the supervisor holds what it will hold with the fake serving (the
    // previous binary's fd among them).
    let first = reload(&sup, &[]);
    sup.wait_for_log(&format!("pid {first} serving http"));
    let before = fd_count(sup.pid()).expect("the supervisor's fds");
    let fake = reload_to_fake(&env, &sup, "state-unasked");
    sup.wait_for_log(&format!("lb-fake-child: pid {fake} gave a bad state"));
    sup.wait_for_log(&format!(
        "state transfer refused: child pid {fake}: it gave a state nobody asked for"
    ));
    sup.wait_for_log(&format!(
        "state transfer refused: child pid {fake}: it gave fds of a state nobody asked for"
    ));
    sup.wait_for_log(&format!("old child pid {first} exited"));
    // The fake serves on, and the supervisor holds nothing of what it gave.
    assert_eq!(sup.child_pid(), fake);
    wait_fds(&sup, before);
}
