//! Releases across protocol versions: the previous release (the frozen fixture of commit
//! 211a8cc, protocol 1; see `littleboss_tests::release_support`) and this one, each as
//! supervisor, child and client of the other; and builds of this release narrowed to
//! one protocol with `LITTLEBOSS_TEST_PROTOCOLS`, so that negotiation and refusal run
//! between builds of this release too.
//!
//! Both binaries are the service `lbhttp` with the listener `http`; each answers a
//! request with its pid and executable, so an answer says which binary serves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use littleboss_tests::release_support::{
    OLD_PROTOCOL, PROTOCOLS_VAR, TEST_PROTOCOLS, UPGRADE_REFUSED, assert_ok, environ_var,
    names_versions, old_release, run_with_env, start_with_env,
};
use littleboss_tests::{Answer, Env, NO_ARGS, Outcome, Supervisor, bin, get, port_is_free};

/// This release's `lb-http`.
fn new_bin() -> &'static Path {
    bin!("lb-http")
}

/// The previous release's `lb-http-211a8cc`, built on first use.
fn old_bin() -> PathBuf {
    old_release(new_bin())
}

/// `path` as the answers name it (`current_exe`: symlinks resolved).
fn exe(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", path.display()))
}

/// Waits for an answer on `addr` from binary `bin`, checks that it comes from the
/// supervisor's serving child, and returns it.
#[track_caller]
fn served_by(sup: &Supervisor<'_>, addr: SocketAddr, bin: &Path) -> Answer {
    let want = exe(bin);
    let answer = sup.wait_for(&format!("an answer from {}", want.display()), || {
        get(addr)
            .ok()
            .filter(|answer| Path::new(&answer.exe) == want)
    });
    assert_eq!(answer.mode, "supervised", "{answer:?}");
    assert_eq!(answer.pid, sup.child_pid(), "{answer:?}\n{}", sup.logs());
    answer
}

/// Panics unless `outcome` exited 1 with a reason on stderr that says `protocol` and
/// names each of `versions`.
#[track_caller]
fn assert_protocol_refusal(sup: &Supervisor<'_>, what: &str, outcome: &Outcome, versions: &[u64]) {
    assert_eq!(
        outcome.code(),
        Some(1),
        "{what} should be refused: {outcome}\n{}",
        sup.logs()
    );
    assert!(
        outcome.stderr.contains("protocol") && names_versions(&outcome.stderr, versions),
        "{what} should be refused with a reason that names protocols {versions:?}: {outcome}"
    );
}

/// `--littleboss=status` of `bin`: exits 0 and shows the supervisor and the child.
#[track_caller]
fn assert_status_text(env: &Env, sup: &Supervisor<'_>, bin: &Path, child: u32) {
    let outcome = env.run(bin, &["--littleboss=status"]);
    assert_ok(sup, "status", &outcome);
    let header = format!("lbhttp: supervisor pid {} ", sup.pid());
    assert!(outcome.stdout.contains(&header), "{outcome}");
    assert!(
        outcome.stdout.contains(&format!("child pid {child} ")),
        "{outcome}"
    );
}

/// `--littleboss=stop` of `bin`: exits 0, the supervisor exits 0, the port is free.
#[track_caller]
fn stop_with(env: &Env, sup: &Supervisor<'_>, bin: &Path, addr: SocketAddr) {
    let outcome = env.run(bin, &["--littleboss=stop"]);
    assert_ok(sup, "stop", &outcome);
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    sup.wait_for("the port to be free", || port_is_free(addr).then_some(()));
}

/// An old supervisor runs a child of this release, reloaded by this release's client,
/// answers its `status` and `status-json` (at protocol 1), takes the old binary back,
/// and stops when this release's client asks.
#[test]
fn old_supervisor_runs_a_new_child_for_a_new_client() {
    let env = Env::new();
    let (old, new) = (old_bin(), new_bin());
    let sup = env.start(&old, NO_ARGS);
    let addr = sup.addr("http");
    let first = served_by(&sup, addr, &old);

    assert_ok(&sup, "reload", &env.run(new, &["--littleboss=reload"]));
    let second = served_by(&sup, addr, new);
    assert_ne!(second.pid, first.pid);

    assert_status_text(&env, &sup, new, second.pid);
    let status = env.status_json(new);
    assert_eq!(status["protocol"], OLD_PROTOCOL, "{status}");
    assert_eq!(status["child_pid"], second.pid, "{status}");
    assert_eq!(status["supervisor_pid"], sup.pid(), "{status}");
    assert_eq!(status["state"], "running", "{status}");

    // Rollback: the old binary again, reloaded by its own client.
    assert_ok(
        &sup,
        "reload back",
        &env.run(&old, &["--littleboss=reload"]),
    );
    let third = served_by(&sup, addr, &old);
    assert_ne!(third.pid, second.pid);

    stop_with(&env, &sup, new, addr);
}

/// This release's `upgrade` in front of an old supervisor is refused, naming the
/// version and what to do, and changes nothing: the same child serves, and a reload
/// (forward, then back) still works.
#[test]
fn old_supervisor_is_not_upgraded_and_keeps_serving() {
    let env = Env::new();
    let (old, new) = (old_bin(), new_bin());
    let sup = env.start(&old, NO_ARGS);
    let addr = sup.addr("http");
    served_by(&sup, addr, &old);
    assert_ok(&sup, "reload", &env.run(new, &["--littleboss=reload"]));
    let serving = served_by(&sup, addr, new);

    let outcome = env.run(new, &["--littleboss=upgrade"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}\n{}", sup.logs());
    assert!(outcome.stderr.contains(UPGRADE_REFUSED), "{outcome}");

    assert_eq!(served_by(&sup, addr, new), serving);
    let status = env.status_json(new);
    assert_eq!(status["supervisor_pid"], sup.pid(), "{status}");
    assert_eq!(status["protocol"], OLD_PROTOCOL, "{status}");

    assert_ok(
        &sup,
        "reload back",
        &env.run(&old, &["--littleboss=reload"]),
    );
    let back = served_by(&sup, addr, &old);
    assert_ne!(back.pid, serving.pid);
    stop_with(&env, &sup, new, addr);
}

/// A supervisor of this release runs a child of the previous release (a rollback),
/// answers the old client's `reload`, `status` and `stop`, and moves forward again on
/// a reload by this release's client.
#[test]
fn new_supervisor_runs_an_old_child_for_an_old_client() {
    let env = Env::new();
    let (old, new) = (old_bin(), new_bin());
    let sup = env.start(new, NO_ARGS);
    let addr = sup.addr("http");
    let first = served_by(&sup, addr, new);

    assert_ok(&sup, "rollback", &env.run(&old, &["--littleboss=reload"]));
    let second = served_by(&sup, addr, &old);
    assert_ne!(second.pid, first.pid);
    assert_status_text(&env, &sup, &old, second.pid);
    let status = env.status_json(&old);
    assert_eq!(status["child_pid"], second.pid, "{status}");

    assert_ok(
        &sup,
        "reload forward",
        &env.run(new, &["--littleboss=reload"]),
    );
    let third = served_by(&sup, addr, new);
    assert_ne!(third.pid, second.pid);

    stop_with(&env, &sup, &old, addr);
}

/// A supervisor of this release speaks protocols 1 to 3: its status says so, and its
/// children (of either release) find the range in their environment.
#[test]
fn new_supervisor_speaks_its_whole_range() {
    let env = Env::new();
    let (old, new) = (old_bin(), new_bin());
    let sup = env.start(new, NO_ARGS);
    let addr = sup.addr("http");
    let first = served_by(&sup, addr, new);

    let status = env.status_json(new);
    let newest = littleboss::PROTOCOL;
    let range = format!("1-{newest}");
    assert_eq!(status["protocol"], newest, "{status}");
    assert_eq!(
        status["protocols"],
        serde_json::json!([1, newest]),
        "{status}"
    );
    assert_eq!(
        environ_var(first.pid, PROTOCOLS_VAR).as_deref(),
        Some(range.as_str()),
        "the environment of the child"
    );

    assert_ok(&sup, "rollback", &env.run(&old, &["--littleboss=reload"]));
    let second = served_by(&sup, addr, &old);
    assert_eq!(
        environ_var(second.pid, PROTOCOLS_VAR).as_deref(),
        Some(range.as_str()),
        "the environment of the old child"
    );
    let status = env.status_json(new);
    assert_eq!(status["protocol"], newest, "{status}");
    stop_with(&env, &sup, new, addr);
}

/// A build of this release narrowed to protocol 1 is a protocol-1 supervisor: its
/// status says protocol 1, `upgrade` is refused as in front of an old release, and
/// reloads (to this release and to the previous one) work.
#[test]
fn supervisor_narrowed_to_protocol_1_acts_as_protocol_1() {
    let env = Env::new();
    let (old, new) = (old_bin(), new_bin());
    let sup = start_with_env(&env, new, &[(TEST_PROTOCOLS, "1")], NO_ARGS);
    let addr = sup.addr("http");
    let first = served_by(&sup, addr, new);

    let status = env.status_json(new);
    assert_eq!(status["protocol"], 1, "{status}");

    let outcome = env.run(new, &["--littleboss=upgrade"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}\n{}", sup.logs());
    assert!(outcome.stderr.contains(UPGRADE_REFUSED), "{outcome}");
    assert_eq!(served_by(&sup, addr, new), first);

    assert_ok(&sup, "reload", &env.run(new, &["--littleboss=reload"]));
    let second = served_by(&sup, addr, new);
    assert_ne!(second.pid, first.pid);
    assert_ok(&sup, "rollback", &env.run(&old, &["--littleboss=reload"]));
    let third = served_by(&sup, addr, &old);
    assert_ne!(third.pid, second.pid);
    stop_with(&env, &sup, new, addr);
}

/// A build of this release narrowed to protocol 2 refuses the previous release (which
/// speaks 1 only): the reload fails, naming the versions, and the child keeps serving.
#[test]
fn supervisor_narrowed_to_protocol_2_refuses_the_old_release() {
    let env = Env::new();
    let (old, new) = (old_bin(), new_bin());
    let sup = start_with_env(&env, new, &[(TEST_PROTOCOLS, "2")], NO_ARGS);
    let addr = sup.addr("http");
    let first = served_by(&sup, addr, new);
    let status = env.status_json(new);
    assert_eq!(status["protocol"], 2, "{status}");
    assert_eq!(status["protocols"], serde_json::json!([2, 2]), "{status}");

    let outcome = env.run(&old, &["--littleboss=reload"]);
    assert_protocol_refusal(&sup, "a reload to the old release", &outcome, &[1, 2]);
    assert_eq!(served_by(&sup, addr, new), first);
    let status = env.status_json(new);
    assert_eq!(status["child_pid"], first.pid, "{status}");
    assert_eq!(status["state"], "running", "{status}");

    stop_with(&env, &sup, new, addr);
}

/// A client of this release narrowed to protocol 2, in front of a supervisor narrowed
/// to protocol 1, is refused clearly (naming both versions) and changes nothing.
#[test]
fn client_narrowed_to_protocol_2_is_refused_by_a_protocol_1_supervisor() {
    let env = Env::new();
    let new = new_bin();
    let sup = start_with_env(&env, new, &[(TEST_PROTOCOLS, "1")], NO_ARGS);
    let addr = sup.addr("http");
    let first = served_by(&sup, addr, new);

    let only_2 = [(TEST_PROTOCOLS, "2")];
    for command in ["--littleboss=status", "--littleboss=reload"] {
        let outcome = run_with_env(&env, new, &only_2, &[command]);
        assert_protocol_refusal(&sup, command, &outcome, &[1, 2]);
        assert_eq!(served_by(&sup, addr, new), first);
    }
    let status = env.status_json(new);
    assert_eq!(status["child_pid"], first.pid, "{status}");
    assert_eq!(status["reloads"], 0, "{status}");

    stop_with(&env, &sup, new, addr);
}

/// A client of this release narrowed to protocol 1, in front of a supervisor that
/// speaks 1 and 2, works at protocol 1: `status`, `reload` and `stop`.
#[test]
fn client_narrowed_to_protocol_1_works_with_a_new_supervisor() {
    let env = Env::new();
    let new = new_bin();
    let sup = env.start(new, NO_ARGS);
    let addr = sup.addr("http");
    let first = served_by(&sup, addr, new);

    let only_1 = [(TEST_PROTOCOLS, "1")];
    let outcome = run_with_env(&env, new, &only_1, &["--littleboss=status"]);
    assert_ok(&sup, "status", &outcome);
    assert!(
        outcome
            .stdout
            .contains(&format!("child pid {} ", first.pid)),
        "{outcome}"
    );
    let outcome = run_with_env(&env, new, &only_1, &["--littleboss=reload"]);
    assert_ok(&sup, "reload", &outcome);
    let second = served_by(&sup, addr, new);
    assert_ne!(second.pid, first.pid);

    let outcome = run_with_env(&env, new, &only_1, &["--littleboss=stop"]);
    assert_ok(&sup, "stop", &outcome);
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    sup.wait_for("the port to be free", || port_is_free(addr).then_some(()));
}
