//! The release before the supervisor's second shape (the fixture of commit 9e15504:
//! protocols 1 to 3, upgrade state version 1; see `littleboss_tests::release_support`)
//! and this one: the previous supervisor upgraded in place to this release under load
//! and back again, and each release as the other's child and client.
//!
//! Both binaries are the service `lbhttp` with the listener `http`; each answers a
//! request with its pid and executable, so an answer says which binary serves.

use std::path::{Path, PathBuf};

use littleboss_tests::load_support::{Client, Load};
use littleboss_tests::release_support::{RELEASE_9E15504, assert_ok};
use littleboss_tests::{Env, NO_ARGS, Supervisor, bin, port_is_free};

/// Copies of this release's `lb-http` and of the previous release's, in `env`.
fn binaries(env: &Env) -> (PathBuf, PathBuf) {
    let previous = RELEASE_9E15504.build(bin!("lb-http"));
    (
        env.copy_binary(&previous, "previous"),
        env.copy_binary(bin!("lb-http"), "this"),
    )
}

fn shown(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Waits until the supervisor's serving child runs `bin` and is running; its pid.
fn serving(sup: &Supervisor<'_>, bin: &Path) -> u32 {
    let status = sup.wait_for(&format!("a child of {}", bin.display()), || {
        let status = sup.try_status().ok()?;
        (status["child_path"] == shown(bin) && status["state"] == "running").then_some(status)
    });
    status["child_pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .expect("a child pid")
}

/// The supervisor's executable, from `/proc`.
fn exe_of(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).expect("read /proc/PID/exe")
}

/// An upgrade by `bin` succeeds, and the supervisor, with the same pid, runs `bin`
/// after it, as does its child; returns the child's pid.
fn upgrade(env: &Env, sup: &Supervisor<'_>, bin: &Path, upgrades: u64) -> u32 {
    let outcome = env.run(bin, &["--littleboss=upgrade"]);
    assert_ok(sup, "upgrade", &outcome);
    assert!(
        outcome.stdout.contains("upgraded lbhttp: child pid "),
        "{outcome}"
    );
    let child = serving(sup, bin);
    let status = sup.status();
    assert_eq!(status["supervisor_pid"], sup.pid(), "{status}");
    assert_eq!(status["supervisor_path"], shown(bin), "{status}");
    assert_eq!(status["upgrades"], upgrades, "{status}");
    assert_eq!(status["protocols"], serde_json::json!([1, 3]), "{status}");
    assert_eq!(exe_of(sup.pid()), bin, "the supervisor runs the new binary");
    child
}

/// A supervisor of the previous release takes this release's `upgrade` under load:
/// its state (state version 1) crosses the exec into this release, and no request
/// fails; then the previous release's `upgrade` takes it back, as a rollback of the
/// supervisor would, this release writing version 1 for it.
#[test]
fn the_previous_supervisor_upgrades_to_this_release_under_load_and_back() {
    let env = Env::new();
    let (previous, this) = binaries(&env);
    let sup = env.start(&previous, NO_ARGS);
    let addr = sup.addr("http");
    let first = serving(&sup, &previous);
    let load = Load::start(addr, &[Client::Fresh, Client::KeepAlive, Client::Fresh]);
    load.wait_for_pid(&sup, first);

    let second = upgrade(&env, &sup, &this, 1);
    assert_ne!(second, first);
    load.wait_for_pid(&sup, second);
    let third = upgrade(&env, &sup, &previous, 2);
    assert_ne!(third, second);
    // The previous release reads only state version 1: refused version 2 in its
    // probe, it was handed version 1.
    let log = sup.logs();
    assert!(log.contains("(upgrade state version 1)"), "{log}");
    load.wait_for_pid(&sup, third);

    let (failures, _, ok) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:#?}\n{}",
        failures.len(),
        ok + failures.len() as u64,
        sup.logs()
    );
    assert_ok(&sup, "stop", &env.run(&this, &["--littleboss=stop"]));
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    sup.wait_for("the port to be free", || port_is_free(addr).then_some(()));
}

/// Each release's supervisor runs a child of the other, reloaded by either client, and
/// answers the other's `status` and `stop`, at protocol 3.
#[test]
fn each_release_runs_the_others_child_for_the_others_client() {
    let env = Env::new();
    let (previous, this) = binaries(&env);
    for (supervisor, other) in [(&this, &previous), (&previous, &this)] {
        let sup = env.start(supervisor, NO_ARGS);
        let addr = sup.addr("http");
        let first = serving(&sup, supervisor);
        assert_ok(&sup, "reload", &env.run(other, &["--littleboss=reload"]));
        let second = serving(&sup, other);
        assert_ne!(second, first);
        for client in [supervisor, other] {
            let status = env.status_json(client);
            assert_eq!(status["protocol"], 3, "{status}");
            assert_eq!(status["child_pid"], second, "{status}");
        }
        assert_ok(
            &sup,
            "reload back",
            &env.run(supervisor, &["--littleboss=reload"]),
        );
        assert_ne!(serving(&sup, supervisor), second);
        assert_ok(&sup, "stop", &env.run(other, &["--littleboss=stop"]));
        assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
        sup.wait_for("the port to be free", || port_is_free(addr).then_some(()));
    }
}
