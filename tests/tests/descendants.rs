//! No process of the service outlives it: descendants that leave the child's process
//! group (`setsid()`) are reparented to the supervisor, reaped when they exit, and ended
//! at stop, so the port is free for the next start.

use littleboss_tests::{
    DEADLINE, Env, Supervisor, bin, get, is_alive, port_is_free, proc_exists, socket_inodes,
    status_field, wait_for, zombie_children,
};

/// The pid that `lb-detach` pid `child` printed after `what` (`helper`,
/// `orphan`).
fn printed_pid(sup: &Supervisor<'_>, child: u32, what: &str) -> u32 {
    let line = sup.wait_for_log(&format!("lb-detach: pid {child} {what} "));
    let pid = line
        .rsplit(' ')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    sup.track(pid);
    pid
}

#[test]
fn a_detached_helper_is_ended_at_stop_and_the_port_is_free() {
    let env = Env::new();
    let sup = env.start(bin!("lb-detach"), &["--http=127.0.0.1:0"]);
    let child = sup.child_pid();
    let addr = sup.addr("http");
    let helper = printed_pid(&sup, child, "helper");
    assert!(is_alive(helper), "the helper runs");
    assert!(
        !socket_inodes(helper).is_empty(),
        "the helper holds the listener"
    );
    assert_eq!(get(addr).expect("GET").pid, child);
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}\n{}", sup.logs());
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    // Nothing of it remains, not even a zombie: the supervisor reaped it before it
    // answered the stop.
    assert!(
        !proc_exists(helper),
        "the helper (pid {helper}) outlived the supervisor: state {:?}, parent {:?}\n{}",
        littleboss_tests::proc_state(helper),
        status_field(helper, "PPid"),
        sup.logs()
    );
    assert!(
        sup.stderr().contains("1 process (pid ") && sup.stderr().contains("ending it"),
        "{}",
        sup.logs()
    );
    assert!(port_is_free(addr), "nothing holds the port");
    let http = format!("--http={addr}");
    let next = env.start(bin!("lb-detach"), &[http.as_str()]);
    assert_eq!(next.addr("http"), addr, "a new start binds the port");
    let stop = next.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
}

#[test]
fn orphans_of_the_service_are_reparented_to_the_supervisor_and_reaped() {
    let env = Env::new();
    let sup = env.start(bin!("lb-detach"), &["--", "--orphan"]);
    let child = sup.child_pid();
    let orphan = printed_pid(&sup, child, "orphan");
    // The orphan's parent is the supervisor (while it runs), not init.
    let parent = status_field(orphan, "PPid").and_then(|p| p.parse::<u32>().ok());
    assert!(proc_exists(orphan), "the orphan sleeps for a second");
    assert_eq!(parent, Some(sup.pid()), "the orphan's parent");
    wait_for(DEADLINE, "the orphan to be reaped", || {
        (!proc_exists(orphan)).then_some(())
    });
    assert!(
        zombie_children(sup.pid()).is_empty(),
        "zombies of the supervisor: {:?}",
        zombie_children(sup.pid())
    );
    // The supervisor still serves, with the same child.
    assert_eq!(get(sup.addr("http")).expect("GET").pid, child);
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
}
