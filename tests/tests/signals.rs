//! Signals to the supervisor: SIGTERM and SIGINT stop, SIGHUP reloads, and SIGKILL
//! leaves a child that winds down by itself.

use littleboss_tests::{Env, NO_ARGS, Signal, bin, get, is_alive, port_is_free, wait_gone};

#[test]
fn sigterm_to_the_supervisor_stops_it_with_the_childs_code() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), &["--exit-code=6"]);
    let child = sup.child_pid();
    sup.signal(Signal::TERM);
    assert_eq!(sup.wait_code(), 6, "{}", sup.logs());
    wait_gone(child, "the child");
    assert!(!env.socket("lbhttp").exists(), "the socket is removed");
    assert!(
        sup.stderr()
            .contains("littleboss: lbhttp: SIGTERM: stopping"),
        "{}",
        sup.logs()
    );
}

#[test]
fn sigint_to_the_supervisor_stops_it() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let child = sup.child_pid();
    sup.signal(Signal::INT);
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    wait_gone(child, "the child");
    assert!(!env.socket("lbhttp").exists(), "the socket is removed");
}

#[test]
fn sighup_reloads_from_the_current_path() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    sup.signal(Signal::HUP);
    let status = sup.wait_for("a reload after SIGHUP", || {
        sup.try_status()
            .ok()
            .filter(|s| s["reloads"] == 1 && s["state"] == "running")
    });
    let new = u32::try_from(status["child_pid"].as_u64().expect("a child")).expect("a pid");
    assert_ne!(new, old);
    let path = bin!("lb-http").to_str().expect("UTF-8 path");
    assert_eq!(status["child_path"], path);
    assert_eq!(status["previous_path"], path);
    assert_eq!(status["supervisor_pid"], sup.pid());
    wait_gone(old, "the old child");
    assert_eq!(get(addr).expect("GET after SIGHUP").pid, new);
    assert!(is_alive(sup.pid()));
}

#[test]
fn sigkill_to_the_supervisor_makes_the_child_wind_down() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let child = sup.child_pid();
    let addr = sup.addr("http");
    assert_eq!(get(addr).expect("GET").pid, child);
    sup.signal(Signal::KILL);
    assert_eq!(sup.wait_exit().code(), None, "killed by a signal");
    // The child sees its channel close, gets lameduck, and exits by itself.
    wait_gone(child, "the child of a killed supervisor");
    assert!(
        sup.stderr()
            .contains(&format!("lb-http: pid {child} wound down")),
        "the child wound down through lameduck:\n{}",
        sup.logs()
    );
    sup.wait_for("the port to be free again", || {
        port_is_free(addr).then_some(())
    });
}

#[test]
fn start_after_a_killed_supervisor_replaces_its_stale_socket() {
    let env = Env::new();
    let first = env.start(bin!("lb-http"), NO_ARGS);
    let child = first.child_pid();
    first.signal(Signal::KILL);
    first.wait_exit();
    wait_gone(child, "the child of a killed supervisor");
    assert!(
        env.socket("lbhttp").exists(),
        "SIGKILL leaves the socket file"
    );
    let status = env.run(bin!("lb-http"), &["--littleboss=status"]);
    assert_eq!(status.code(), Some(1), "{status}");
    let expected = format!(
        "lbhttp: no supervisor running (stale socket at {}, nobody answers)",
        env.socket("lbhttp").display()
    );
    assert!(status.stderr.contains(&expected), "{status}");
    let second = env.start(bin!("lb-http"), NO_ARGS);
    assert_eq!(second.status()["supervisor_pid"], second.pid());
    assert_eq!(
        get(second.addr("http")).expect("GET").pid,
        second.child_pid()
    );
}
