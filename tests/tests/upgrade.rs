//! `--littleboss=upgrade`: the child is reloaded to the new binary, then the supervisor
//! re-executes itself as that binary in place. Under load no request fails; the
//! supervisor's pid, its listening sockets (the same inodes) and its control socket stay;
//! a binary that exits at start, one that is not a littleboss program and one that
//! refuses the state change nothing; an upgrade during a reload is refused; twenty in a
//! row leave fds and memory flat and the counts right; and signals work after it.
//!
//! Helper programs: `lb-http` (service `lbhttp`) and `lb-reload-gate` (an `lbhttp` that
//! is ready only when the test creates a file).

use std::net::SocketAddr;
use std::path::Path;

use littleboss_tests::attack_support::{fd_count, raw, vm_kib, wire};
use littleboss_tests::load_support::{Client, Load};
use littleboss_tests::{
    Env, NO_ARGS, Outcome, Signal, Supervisor, bin, children_of, get, wait_gone,
};

/// A path as `status-json` shows it.
fn shown(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Checks a successful upgrade of `lbhttp` from child `old` to `to`: exit 0, and the
/// two lines it prints. Returns the new child's pid.
fn upgraded(outcome: &Outcome, sup: &Supervisor<'_>, old: u32, to: &Path) -> u32 {
    assert_eq!(outcome.code(), Some(0), "upgrade failed: {outcome}");
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("upgrading lbhttp: reloading the child, then the supervisor"),
        "{outcome}"
    );
    let prefix = format!("upgraded lbhttp: child pid {old} -> ");
    let rest = lines
        .get(1)
        .and_then(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("expected {prefix:?}...:\n{outcome}"));
    let (new, rest) = rest.split_once(" in ").expect("a new pid");
    let suffix = format!(
        " ms; supervisor pid {} now runs {} (protocol {p} -> {p})",
        sup.pid(),
        to.display(),
        p = littleboss::PROTOCOL
    );
    assert!(rest.ends_with(&suffix), "{outcome}");
    let new: u32 = new.parse().expect("a pid");
    sup.track(new);
    new
}

/// Checks a failed upgrade: exit 1, `upgrade of lbhttp failed: REASON`. Returns REASON.
fn upgrade_failed(outcome: &Outcome) -> String {
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    let reason = outcome
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("upgrade of lbhttp failed: "))
        .unwrap_or_else(|| panic!("no reason in: {outcome}"));
    reason.to_string()
}

/// The inode of the socket listening at `addr`, from `/proc/net/tcp`.
fn listening_inode(addr: SocketAddr) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port = format!(":{:04X}", addr.port());
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, then state 0A (listening), then the inode in field 9.
            (fields.get(1)?.ends_with(&port) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no socket listens at {addr}"))
}

/// The executable a process runs.
fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .expect("read /proc/PID/exe")
        .display()
        .to_string()
}

/// What must be the same before and after an upgrade that changed nothing.
fn assert_untouched(sup: &Supervisor<'_>, child: u32, exe: &Path, addr: SocketAddr) {
    let status = sup.status();
    assert_eq!(status["supervisor_path"], shown(exe), "{status}");
    assert_eq!(status["upgrades"], 0, "{status}");
    assert_eq!(status["child_pid"], child, "{status}");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(exe_of(sup.pid()), shown(exe));
    assert_eq!(children_of(sup.pid()), vec![child]);
    assert_eq!(get(addr).expect("GET after the refusal").pid, child);
}

#[test]
fn upgrade_under_load_loses_no_request_and_keeps_the_pid_and_the_sockets() {
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-http"), "one");
    let two = env.copy_binary(bin!("lb-http"), "two");
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let inode = listening_inode(addr);
    let control = std::fs::metadata(env.socket("lbhttp")).expect("the control socket");
    let load = Load::start(addr, &[Client::Fresh, Client::KeepAlive, Client::Fresh]);
    load.wait_for_pid(&sup, old);

    let outcome = env.run(&two, &["--littleboss=upgrade"]);
    let new = upgraded(&outcome, &sup, old, &two);
    load.wait_for_pid(&sup, new);
    let (failures, _, ok) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:#?}\n{}",
        failures.len(),
        ok + failures.len() as u64,
        sup.logs()
    );

    let status = sup.status();
    assert_eq!(status["supervisor_pid"], sup.pid(), "{status}");
    assert_eq!(status["supervisor_path"], shown(&two), "{status}");
    assert_eq!(status["child_path"], shown(&two), "{status}");
    assert_eq!(status["previous_path"], shown(&one), "{status}");
    assert_eq!(status["upgrades"], 1, "{status}");
    assert_eq!(status["reloads"], 1, "{status}");
    assert_eq!(
        status["protocols"],
        serde_json::json!([1, littleboss::PROTOCOL]),
        "{status}"
    );
    assert_eq!(
        exe_of(sup.pid()),
        shown(&two),
        "the supervisor runs the new binary"
    );
    assert_eq!(listening_inode(addr), inode, "the same listening socket");
    assert!(
        littleboss_tests::socket_inodes(sup.pid()).contains(&inode),
        "the supervisor still holds it"
    );
    let after = std::fs::metadata(env.socket("lbhttp")).expect("the control socket");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(after.ino(), control.ino(), "the same control socket file");
    wait_gone(old, "the old child");
    assert_eq!(children_of(sup.pid()), vec![new]);
    // The new image handles signals: SIGHUP reloads, SIGTERM stops.
    sup.signal(Signal::HUP);
    let reloaded = sup.wait_for("SIGHUP to reload after the upgrade", || {
        let status = sup.try_status().ok()?;
        (status["reloads"] == 2 && status["state"] == "running").then_some(status)
    });
    assert_ne!(reloaded["child_pid"], new, "{reloaded}");
    sup.signal(Signal::TERM);
    sup.assert_exit(0, "stopped, exit code 0");
    assert!(
        !env.socket("lbhttp").exists(),
        "the control socket is removed"
    );
}

#[test]
fn an_upgrade_to_a_binary_that_exits_at_start_changes_nothing() {
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-http"), "one");
    let two = env.copy_binary(bin!("lb-http"), "two");
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let child = sup.child_pid();
    let outcome = env.run(&two, &["--littleboss=upgrade", "--", "--exit-at-start"]);
    let reason = upgrade_failed(&outcome);
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert_untouched(&sup, child, &one, addr);
    // A panic at start is quoted, where and why.
    let outcome = env.run(&two, &["--littleboss=upgrade", "--", "--panic-at-start"]);
    let reason = upgrade_failed(&outcome);
    assert!(
        reason.contains("exited with code 101")
            && reason.contains("(its main panicked at tests/src/bin/lb-http.rs:")
            && reason.contains(": lb-http: told to panic at start)"),
        "{reason}"
    );
    assert_untouched(&sup, child, &one, addr);
}

/// A hand-encoded `Upgrade` to `path` (what a client of another program would ask):
/// the refusal's reason.
fn refused_upgrade(env: &Env, path: &Path) -> String {
    let request = wire::upgrade_request(path.as_os_str().as_encoded_bytes());
    let response = raw::ask(&env.socket("lbhttp"), &request).expect("an answer");
    response.failed().expect("a refusal").to_string()
}

#[test]
fn an_upgrade_to_a_program_that_is_not_littleboss_changes_nothing() {
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-http"), "one");
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let child = sup.child_pid();
    // What a client of another program would ask: an upgrade to /bin/sleep.
    let sleep = env.copy_binary(Path::new("/bin/sleep"), "sleep");
    let reason = refused_upgrade(&env, &sleep);
    assert!(reason.contains("did not answer the probe"), "{reason}");
    assert!(reason.contains("nothing was changed"), "{reason}");
    assert_untouched(&sup, child, &one, addr);
}

/// A script may run as a child, but cannot be the supervisor: an upgrade to one says
/// so, instead of calling it a program that is not littleboss.
#[test]
fn an_upgrade_to_a_script_says_it_is_a_script() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-http"), "one");
    let sup = env.start(&one, NO_ARGS);
    let addr = sup.addr("http");
    let child = sup.child_pid();
    let script = env.path().join("run.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexec {} \"$@\"\n", one.display()),
    )
    .expect("the script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let reason = refused_upgrade(&env, &script);
    assert!(
        reason.contains("it is a script (it starts with #!)"),
        "{reason}"
    );
    assert!(!reason.contains("not a littleboss program"), "{reason}");
    assert!(reason.contains("nothing was changed"), "{reason}");
    assert_untouched(&sup, child, &one, addr);
}

/// The probe's time limit counts until the probe exits, and what it leaves behind goes
/// with its process group: a probe that leaves a process holding its stdout open is
/// answered as soon as it exits (not when that process ends, 600 s later), and the
/// process is killed.
#[test]
fn a_probe_that_leaves_a_process_behind_is_answered_when_it_exits() {
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-http"), "one");
    let leaver = env.copy_binary(bin!("lb-probe-leaver"), "leaver");
    let pids = env.path().join("left.pid");
    let pids_shown = pids.to_str().expect("a UTF-8 path");
    let sup = env.start_with(&one, NO_ARGS, &[("LB_PROBE_LEAVER_PIDS", pids_shown)]);
    sup.wait_running();
    let addr = sup.addr("http");
    let child = sup.child_pid();
    let reason = refused_upgrade(&env, &leaver);
    assert!(reason.contains("it left a process behind"), "{reason}");
    assert!(reason.contains("nothing was changed"), "{reason}");
    let left: u32 = std::fs::read_to_string(&pids)
        .expect("the probe ran")
        .trim()
        .parse()
        .expect("a pid");
    wait_gone(left, "the process the probe left behind");
    assert_untouched(&sup, child, &one, addr);
}

#[test]
fn an_upgrade_to_a_binary_that_refuses_the_state_changes_nothing() {
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-http"), "one");
    let two = env.copy_binary(bin!("lb-http"), "two");
    // Every binary this supervisor probes reads another state version than it writes
    // (it writes 5, then 4, 3, 2 and 1).
    let sup = env.start_with(&one, NO_ARGS, &[("LITTLEBOSS_TEST_STATE_VERSION", "6")]);
    sup.wait_running();
    let addr = sup.addr("http");
    let child = sup.child_pid();
    let outcome = env.run(&two, &["--littleboss=upgrade"]);
    let reason = upgrade_failed(&outcome);
    assert!(
        reason.contains(&format!(
            "{} cannot take over the supervisor: the running supervisor's state is version 1; this binary reads version 6; nothing was changed",
            two.display()
        )),
        "{reason}"
    );
    assert_untouched(&sup, child, &one, addr);
}

#[test]
fn an_upgrade_during_a_reload_is_refused_and_the_reload_goes_on() {
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-http"), "one");
    let gated = env.copy_binary(bin!("lb-reload-gate"), "gated");
    let two = env.copy_binary(bin!("lb-http"), "two");
    let sup = env.start(&one, NO_ARGS);
    let gate = env.path().join("gate");
    let arg = format!("--ready-when={}", gate.display());
    let reload = env.spawn(&gated, &["--littleboss=reload", "--", arg.as_str()]);
    sup.wait_reloading_state();
    let outcome = env.run(&two, &["--littleboss=upgrade"]);
    let reason = upgrade_failed(&outcome);
    assert!(reason.contains("a reload is under way"), "{reason}");
    std::fs::write(&gate, b"").expect("open the gate");
    assert_eq!(
        reload.wait_code(),
        0,
        "the reload under way ends well\n{}",
        reload.logs()
    );
    let status = sup.status();
    assert_eq!(status["upgrades"], 0, "{status}");
    assert_eq!(status["supervisor_path"], shown(&one), "{status}");
    assert_eq!(status["child_path"], shown(&gated), "{status}");
}

#[test]
fn twenty_upgrades_in_a_row_keep_fds_and_memory_flat() {
    let env = Env::new();
    let copies = [
        env.copy_binary(bin!("lb-http"), "one"),
        env.copy_binary(bin!("lb-http"), "two"),
    ];
    let sup = env.start(&copies[0], NO_ARGS);
    let addr = sup.addr("http");
    let mut child = sup.child_pid();
    // The first upgrade warms up what the later ones reuse.
    child = upgraded(
        &env.run(&copies[1], &["--littleboss=upgrade"]),
        &sup,
        child,
        &copies[1],
    );
    for old in children_of(sup.pid()).into_iter().filter(|p| *p != child) {
        wait_gone(old, "the first child");
    }
    let fds = fd_count(sup.pid()).expect("the supervisor's fds");
    let rss = vm_kib(sup.pid(), "VmRSS").expect("the supervisor's RSS");
    for i in 2..=21 {
        let to = &copies[i % 2];
        let old = child;
        child = upgraded(&env.run(to, &["--littleboss=upgrade"]), &sup, old, to);
        wait_gone(old, "the old child");
        assert_eq!(get(addr).expect("GET after an upgrade").pid, child);
    }
    let status = sup.status();
    assert_eq!(status["upgrades"], 21, "{status}");
    assert_eq!(status["reloads"], 21, "{status}");
    assert_eq!(status["failures"], 0, "{status}");
    assert_eq!(status["supervisor_pid"], sup.pid(), "{status}");
    let fds_after = fd_count(sup.pid()).expect("the supervisor's fds");
    assert_eq!(fds_after, fds, "fds flat over twenty upgrades");
    let rss_after = vm_kib(sup.pid(), "VmRSS").expect("the supervisor's RSS");
    assert!(
        rss_after < rss + 4096,
        "RSS {rss} KiB -> {rss_after} KiB over twenty upgrades"
    );
    assert_eq!(children_of(sup.pid()), vec![child]);
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
}
