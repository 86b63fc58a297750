//! The previous releases that have `upgrade` and this one: the previous supervisor
//! upgraded in place to this release under load and back again, and each release as the
//! other's child and client. Each test runs against each of five fixtures (see
//! `littleboss_tests::release_support`), and says which in its name:
//!
//! - 9e15504, protocols 1 to 3 and upgrade state version 1: the last release before
//!   the supervisor's second shape;
//! - 8589d1f, protocols 1 to 3 and upgrade state versions 1 and 2: the last release
//!   before protocol 4;
//! - c91da15, protocols 1 to 4 and upgrade state versions 1 to 3: the last release
//!   before protocol 5;
//! - ec17274, protocols 1 to 5 and upgrade state versions 1 to 4: the last release
//!   before protocol 6;
//! - aec18b9, protocols 1 to 6 and upgrade state versions 1 to 5: the last release
//!   before protocol 7 (TLS connections that move), whose state version is this
//!   release's.
//!
//! Both binaries are the service `lbhttp` with the listener `http`; each answers a
//! request with its pid and executable, so an answer says which binary serves.

use std::path::{Path, PathBuf};

use littleboss::PROTOCOL;
use littleboss_tests::load_support::{Client, Load};
use littleboss_tests::release_support::{
    RELEASE_9E15504, RELEASE_8589D1F, RELEASE_AEC18B9, RELEASE_C91DA15, RELEASE_EC17274, Release,
    assert_ok,
};
use littleboss_tests::{Env, NO_ARGS, Supervisor, bin, port_is_free};

/// Copies of this release's `lb-http` and of the previous release's (`release`), in
/// `env`.
fn binaries(env: &Env, release: &Release) -> (PathBuf, PathBuf) {
    let previous = release.build(bin!("lb-http"));
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
/// after it, as does its child, and speaks `bin`'s protocols (`1` to `newest`);
/// returns the child's pid.
fn upgrade(env: &Env, sup: &Supervisor<'_>, bin: &Path, upgrades: u64, newest: u64) -> u32 {
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
    assert_eq!(
        status["protocols"],
        serde_json::json!([1, newest]),
        "{status}"
    );
    assert_eq!(exe_of(sup.pid()), bin, "the supervisor runs the new binary");
    child
}

/// The release at 9e15504 reads only upgrade state version 1: refused each later
/// version in its probe, it is handed version 1.
#[test]
fn the_previous_supervisor_upgrades_to_this_release_under_load_and_back_9e15504() {
    upgrades_to_this_release_under_load_and_back(&RELEASE_9E15504, 1);
}

/// The release at 8589d1f reads upgrade state versions 1 and 2: it is handed version 2.
#[test]
fn the_previous_supervisor_upgrades_to_this_release_under_load_and_back_8589d1f() {
    upgrades_to_this_release_under_load_and_back(&RELEASE_8589D1F, 2);
}

/// The release at c91da15 reads upgrade state versions 1 to 3: it is handed version 3.
#[test]
fn the_previous_supervisor_upgrades_to_this_release_under_load_and_back_c91da15() {
    upgrades_to_this_release_under_load_and_back(&RELEASE_C91DA15, 3);
}

/// The release at ec17274 reads upgrade state versions 1 to 4: it is handed version 4.
#[test]
fn the_previous_supervisor_upgrades_to_this_release_under_load_and_back_ec17274() {
    upgrades_to_this_release_under_load_and_back(&RELEASE_EC17274, 4);
}

/// The release at aec18b9 reads upgrade state versions 1 to 5, as this one does: the
/// state crosses both ways as version 5.
#[test]
fn the_previous_supervisor_upgrades_to_this_release_under_load_and_back_aec18b9() {
    upgrades_to_this_release_under_load_and_back(&RELEASE_AEC18B9, 5);
}

/// A supervisor of the previous release (`release`) takes this release's `upgrade`
/// under load: its state crosses the exec into this release, and no request fails; then
/// the previous release's `upgrade` takes it back, as a rollback of the supervisor
/// would, this release writing `state_version`, the newest the previous release reads,
/// for it.
fn upgrades_to_this_release_under_load_and_back(release: &Release, state_version: u16) {
    let env = Env::new();
    let (previous, this) = binaries(&env, release);
    let sup = env.start(&previous, NO_ARGS);
    let addr = sup.addr("http");
    let first = serving(&sup, &previous);
    let load = Load::start(addr, &[Client::Fresh, Client::KeepAlive, Client::Fresh]);
    load.wait_for_pid(&sup, first);

    let second = upgrade(&env, &sup, &this, 1, u64::from(PROTOCOL));
    assert_ne!(second, first);
    load.wait_for_pid(&sup, second);
    let third = upgrade(&env, &sup, &previous, 2, release.protocols.1);
    assert_ne!(third, second);
    // This release wrote the newest state version the previous release reads.
    let log = sup.logs();
    let exec = format!(
        "re-executing as {} (upgrade state version {state_version})",
        previous.display()
    );
    assert!(log.contains(&exec), "no line {exec:?} in the log:\n{log}");
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

#[test]
fn each_release_runs_the_others_child_for_the_others_client_9e15504() {
    runs_the_others_child_for_the_others_client(&RELEASE_9E15504);
}

#[test]
fn each_release_runs_the_others_child_for_the_others_client_8589d1f() {
    runs_the_others_child_for_the_others_client(&RELEASE_8589D1F);
}

#[test]
fn each_release_runs_the_others_child_for_the_others_client_c91da15() {
    runs_the_others_child_for_the_others_client(&RELEASE_C91DA15);
}

#[test]
fn each_release_runs_the_others_child_for_the_others_client_ec17274() {
    runs_the_others_child_for_the_others_client(&RELEASE_EC17274);
}

#[test]
fn each_release_runs_the_others_child_for_the_others_client_aec18b9() {
    runs_the_others_child_for_the_others_client(&RELEASE_AEC18B9);
}

/// Each release's supervisor, this one's and the previous one's (`release`), runs a
/// child of the other, reloaded by either client, and answers the other's `status` and
/// `stop`, at the newest protocol both speak: each status says its supervisor's
/// newest.
fn runs_the_others_child_for_the_others_client(release: &Release) {
    let env = Env::new();
    let (previous, this) = binaries(&env, release);
    let newest = [u64::from(PROTOCOL), release.protocols.1];
    for ((supervisor, other), newest) in [(&this, &previous), (&previous, &this)]
        .into_iter()
        .zip(newest)
    {
        let sup = env.start(supervisor, NO_ARGS);
        let addr = sup.addr("http");
        let first = serving(&sup, supervisor);
        assert_ok(&sup, "reload", &env.run(other, &["--littleboss=reload"]));
        let second = serving(&sup, other);
        assert_ne!(second, first);
        for client in [supervisor, other] {
            let status = env.status_json(client);
            assert_eq!(status["protocol"], newest, "{status}");
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
