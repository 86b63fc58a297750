//! A program that is a shell script (`#!`) can be run by the supervisor: a reload to it
//! starts it, and a reload of it (SIGHUP) starts it again.

use std::os::unix::fs::PermissionsExt;

use littleboss_tests::attack_support::raw;
use littleboss_tests::attack_support::wire::{self, Response};
use littleboss_tests::{Env, NO_ARGS, Signal, bin, get};

#[test]
fn a_shell_script_program_is_started_and_reloaded() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let first = sup.child_pid();
    let script = env.path().join("lb-http.sh");
    let text = format!(
        "#!/bin/sh\n# A wrapper, as a deploy tool would write one.\nexec '{}' \"$@\"\n",
        bin!("lb-http").display()
    );
    std::fs::write(&script, text).expect("write the script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = script.display().to_string();
    let frame = wire::reload_request(path.as_bytes(), None, &[]);
    match raw::ask(&env.socket("lbhttp"), &frame) {
        Ok(Response::Reloaded { new_pid, .. }) => assert_ne!(new_pid, first),
        other => panic!("a reload to the script: {other:?}\n{}", sup.logs()),
    }
    let status = sup.status();
    assert_eq!(status["child_path"], path.as_str(), "{status}");
    let second = sup.child_pid();
    assert_eq!(get(sup.addr("http")).expect("GET").pid, second);
    // SIGHUP reloads the same program: the script again.
    sup.signal(Signal::HUP);
    let third = sup.wait_for("the reload on SIGHUP", || {
        let status = sup.try_status().ok()?;
        let pid = status["child_pid"].as_u64()?;
        (pid != u64::from(second) && status["state"] == "running").then_some(pid)
    });
    assert_eq!(sup.status()["child_path"], path.as_str());
    assert_eq!(u64::from(get(sup.addr("http")).expect("GET").pid), third);
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
}
