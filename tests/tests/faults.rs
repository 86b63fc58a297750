//! Faults: exit codes through exactly one waiter, a supervisor or a child killed, a
//! child that ignores lameduck or leaves grandchildren, signals during a reload, a
//! SIGHUP storm, and a stop during start-up.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use littleboss_tests::attack_support::wire::{self, Response};
use littleboss_tests::attack_support::{Serving, raw};
use littleboss_tests::{
    DEADLINE, Env, NO_ARGS, Signal, Spawned, Supervisor, bin, children_of, free_port, get,
    is_alive, is_gone, port_is_free, proc_exists, send_signal, socket_inodes, wait_for, wait_gone,
    zombie_children,
};

/// The service name of `lb-http`.
const NAME: &str = "lbhttp";

#[test]
fn stop_always_exits_with_the_childs_own_code() {
    let env = Env::new();
    for code in [0, 3, 7, 42, 0, 9, 1] {
        let sup = env.start(bin!("lb-http"), &[format!("--exit-code={code}")]);
        let child = sup.child_pid();
        let stop = sup.run(&["--littleboss=stop"]);
        assert_eq!(
            stop.code(),
            Some(code),
            "stop of --exit-code={code}: {stop}"
        );
        assert!(
            stop.stdout
                .contains(&format!("stopped lbhttp exit code {code}\n")),
            "{stop}"
        );
        assert_eq!(sup.wait_code(), code, "the supervisor's own exit code");
        wait_gone(child, "the child");
        assert!(!env.socket(NAME).exists(), "the socket is removed");
        assert!(
            sup.stderr().contains(&format!("stopped, exit code {code}")),
            "{}",
            sup.logs()
        );
    }
}

#[test]
fn clean_reloads_never_count_as_failures() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let addr = sup.addr("http");
    let mut child = sup.child_pid();
    for i in 1..=5 {
        let reload = sup.run(&["--littleboss=reload"]);
        assert_eq!(reload.code(), Some(0), "reload {i}: {reload}");
        assert!(
            reload
                .stdout
                .contains(&format!("reloaded lbhttp: pid {child} -> ")),
            "{reload}"
        );
        let status = sup.status();
        assert_eq!(status["failures"], 0, "after reload {i}: {status}");
        assert_eq!(status["reloads"], i, "{status}");
        assert_eq!(status["restarts"], 0, "{status}");
        wait_gone(child, "the old child");
        child = sup.child_pid();
        assert_eq!(get(addr).expect("GET").pid, child);
    }
    // The old children's exits (code 0 after lameduck) are not failures either.
    let status = sup.status();
    assert_eq!(status["failures"], 0, "{status}\n{}", sup.logs());
}

#[test]
fn a_killed_supervisor_leaves_nothing_and_its_successor_takes_over() {
    let env = Env::new();
    let first = env.start(bin!("lb-http"), NO_ARGS);
    let child = first.child_pid();
    let addr = first.addr("http");
    assert_eq!(get(addr).expect("GET").pid, child);
    let killed = Instant::now();
    first.signal(Signal::KILL);
    assert_eq!(first.wait_exit().code(), None, "killed by a signal");
    wait_gone(child, "the child of a killed supervisor");
    let took = killed.elapsed();
    eprintln!("the child exited {took:?} after its supervisor was killed");
    assert!(
        took < Duration::from_secs(10),
        "the child took {took:?} to wind down"
    );
    assert!(
        first
            .stderr()
            .contains(&format!("lb-http: pid {child} wound down")),
        "the child wound down through lameduck\n{}",
        first.logs()
    );
    first.wait_for("the port to be free", || port_is_free(addr).then_some(()));
    assert!(env.socket(NAME).exists(), "SIGKILL leaves the socket file");
    // A new supervisor in the same directory, on the same port.
    let second = env.start(bin!("lb-http"), &[format!("--http={addr}")]);
    let serving = Serving::of(&second, env.socket(NAME));
    assert_eq!(serving.addr, addr);
    assert_eq!(second.status()["supervisor_pid"], second.pid());
    serving.assert_unchanged(&second, "taking over a stale socket");
}

#[test]
fn a_killed_child_stops_the_supervisor_with_code_1() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let child = sup.child_pid();
    send_signal(child, Signal::KILL).expect("kill the child");
    assert_eq!(sup.wait_code(), 1, "{}", sup.logs());
    assert!(!env.socket(NAME).exists(), "the socket is removed");
    assert!(
        sup.stderr()
            .contains(&format!("child pid {child} was killed by signal 9")),
        "{}",
        sup.logs()
    );
    assert!(!proc_exists(child), "the supervisor reaped its child");
}

#[test]
fn a_child_that_exits_with_7_stops_the_supervisor_with_7() {
    let env = Env::new();
    let sup = env.start(bin!("lb-exit"), &["--exit-after-ms=3000", "--code=7"]);
    let child = sup.child_pid();
    let addr = sup.addr("http");
    assert_eq!(get(addr).expect("GET").pid, child);
    assert_eq!(sup.wait_code(), 7, "{}", sup.logs());
    assert!(!env.socket("lbexit").exists(), "the socket is removed");
    assert!(
        sup.stderr()
            .contains(&format!("child pid {child} exited with code 7")),
        "{}",
        sup.logs()
    );
    assert!(!proc_exists(child), "the supervisor reaped its child");
    assert!(port_is_free(addr), "the listener is closed");
}

#[test]
fn a_child_that_ignores_lameduck_is_killed_after_it() {
    let env = Env::new();
    let port = free_port();
    let http = format!("--http=127.0.0.1:{port}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let sup = env.start(bin!("lb-http"), &[http.as_str(), "--ignore-lameduck"]);
    let child = sup.child_pid();
    assert_eq!(sup.addr("http"), addr);
    assert_eq!(get(addr).expect("GET").pid, child);
    let t0 = Instant::now();
    let stop = sup.run(&["--littleboss=stop"]);
    let took = t0.elapsed();
    eprintln!("stop of a child that ignores lameduck (2 s) took {took:?}: {stop}");
    assert!(
        stop.stdout.contains("stopped lbhttp exit code 1"),
        "a killed child's code is 1: {stop}"
    );
    assert!(
        took >= Duration::from_millis(1800),
        "killed before its lameduck time: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    sup.assert_exit(1, "it was still running 2.0 s after lameduck");
    wait_gone(child, "the child");
    assert!(!env.socket(NAME).exists(), "the socket is removed");
    assert!(port_is_free(addr), "nothing holds the port");
    let next = env.start(bin!("lb-http"), &[http.as_str()]);
    let serving = Serving::of(&next, env.socket(NAME));
    assert_eq!(serving.addr, addr);
}

/// The grandchild pid `lb-forker` pid `child` printed.
fn grandchild_of(sup: &Supervisor<'_>, child: u32) -> u32 {
    let line = sup.wait_for_log(&format!("lb-forker: pid {child} grandchild "));
    let pid = line
        .rsplit(' ')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    sup.track(pid);
    pid
}

#[test]
fn grandchildren_holding_the_listener_go_with_their_child() {
    let env = Env::new();
    let sup = env.start(bin!("lb-forker"), NO_ARGS);
    let first = sup.child_pid();
    let addr = sup.addr("http");
    let first_grandchild = grandchild_of(&sup, first);
    assert!(is_alive(first_grandchild), "the grandchild runs");
    assert!(
        !socket_inodes(first_grandchild).is_empty(),
        "the grandchild holds the listener"
    );
    assert_eq!(get(addr).expect("GET").pid, first);
    // A reload retires the first child: its grandchild goes with it.
    let reload = sup.run(&["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    let second = sup.child_pid();
    wait_gone(first, "the old child");
    wait_gone(first_grandchild, "the old child's grandchild");
    let second_grandchild = grandchild_of(&sup, second);
    assert!(is_alive(second_grandchild));
    assert_eq!(get(addr).expect("GET after the reload").pid, second);
    // A stop takes the last ones, and the port is free.
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0);
    wait_gone(second, "the child");
    wait_gone(second_grandchild, "the grandchild");
    wait_for(DEADLINE, "the port to be free", || {
        port_is_free(addr).then_some(())
    });
}

/// Runs `lb-http --littleboss=reload -- --never-ready` for `sup`: a new binary that
/// never becomes ready, so the reload waits (up to 30 s). Returns the reload command and
/// the new child's pid, once the new child serves.
fn reload_to_never_ready(env: &Env, sup: &Supervisor<'_>) -> (Spawned, u32) {
    let reload = env.spawn(
        bin!("lb-http"),
        &["--littleboss=reload", "--", "--never-ready"],
    );
    let line = sup.wait_for_log("reloading: started pid ");
    let new: u32 = line
        .split("started pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    sup.track(new);
    sup.wait_serving(new, "http");
    (reload, new)
}

#[test]
fn sigterm_during_a_reload_exits_cleanly() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let (reload, new) = reload_to_never_ready(&env, &sup);
    assert_eq!(sup.status()["state"], "reloading");
    sup.signal(Signal::TERM);
    assert_eq!(
        sup.wait_code(),
        0,
        "the serving child's code\n{}",
        sup.logs()
    );
    reload.assert_exit(1, "reload of lbhttp failed: cancelled: lbhttp is stopping");
    for (pid, what) in [(old, "the old child"), (new, "the new child")] {
        assert!(is_gone(pid), "{what} (pid {pid}) outlived its supervisor");
        assert!(
            !proc_exists(pid),
            "{what} (pid {pid}) was not reaped by its supervisor"
        );
    }
    assert!(
        sup.stderr().contains(&format!(
            "reload failed: new child pid {new} was killed: the supervisor is stopping"
        )),
        "{}",
        sup.logs()
    );
    assert!(!env.socket(NAME).exists(), "the socket is removed");
}

#[test]
fn a_sighup_storm_ends_with_one_serving_child() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let addr = sup.addr("http");
    for _ in 0..20 {
        sup.signal(Signal::HUP);
    }
    // Settled: running, one child, no reload or old child left.
    let status = sup.wait_for("the storm to settle", || {
        let status = sup.try_status().ok()?;
        let child = status["child_pid"].as_u64()? as u32;
        let settled = status["state"] == "running"
            && children_of(sup.pid()) == vec![child]
            && zombie_children(sup.pid()).is_empty();
        settled.then_some(status)
    });
    let child = status["child_pid"].as_u64().expect("a child") as u32;
    assert_eq!(get(addr).expect("GET after the storm").pid, child);
    let log = sup.stderr();
    let count = |needle: &str| log.matches(needle).count() as u64;
    let hups = count("SIGHUP: reloading");
    let started = count("reloading: started pid");
    let refused = count("reload refused: another reload is under way");
    let reloaded = count("reloaded: pid");
    eprintln!(
        "20 SIGHUPs: {hups} seen, {started} reloads started, {refused} refused, {reloaded} done; status reloads {} failures {}",
        status["reloads"], status["failures"]
    );
    assert!((1..=20).contains(&hups), "{}", sup.logs());
    assert_eq!(
        hups,
        started + refused,
        "every SIGHUP reloads or is refused"
    );
    assert_eq!(status["reloads"], reloaded, "{status}");
    assert_eq!(started, reloaded, "every reload that started ended well");
    assert_eq!(status["failures"], 0, "{status}\n{}", sup.logs());
    assert!(zombie_children(sup.pid()).is_empty());
    assert!(is_alive(sup.pid()));
    // Then 20 more, 10 ms apart: reloads overlap with old children winding down.
    for _ in 0..20 {
        sup.signal(Signal::HUP);
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = sup.wait_for("the second storm to settle", || {
        let status = sup.try_status().ok()?;
        let child = status["child_pid"].as_u64()? as u32;
        let log = sup.stderr();
        let settled = status["state"] == "running"
            && children_of(sup.pid()) == vec![child]
            && zombie_children(sup.pid()).is_empty()
            && log.matches("reloading: started pid").count()
                == log.matches("reloaded: pid").count();
        settled.then_some(status)
    });
    let log = sup.stderr();
    let count = |needle: &str| log.matches(needle).count() as u64;
    let (hups, started, refused, reloaded) = (
        count("SIGHUP: reloading"),
        count("reloading: started pid"),
        count("reload refused: another reload is under way"),
        count("reloaded: pid"),
    );
    eprintln!(
        "after 20 more SIGHUPs 10 ms apart: {hups} seen, {started} started, {refused} refused, {reloaded} done; status reloads {}",
        status["reloads"]
    );
    assert_eq!(hups, started + refused);
    assert_eq!(status["reloads"], reloaded, "{status}");
    assert_eq!(started, reloaded);
    assert_eq!(status["failures"], 0, "{status}\n{}", sup.logs());
    let child = status["child_pid"].as_u64().expect("a child") as u32;
    assert_eq!(get(addr).expect("GET after the storms").pid, child);
}

#[test]
fn stop_before_the_child_is_ready() {
    let env = Env::new();
    let sup = env.start_nowait(bin!("lb-http"), &["--never-ready"]);
    let child = sup.wait_for("a child", || {
        let line = sup
            .stderr()
            .lines()
            .find(|l| l.contains("started child pid "))?
            .to_string();
        line.split("started child pid ")
            .nth(1)?
            .split(';')
            .next()?
            .parse::<u32>()
            .ok()
    });
    sup.track(child);
    sup.wait_serving(child, "http");
    assert_eq!(sup.status()["state"], "starting");
    let t0 = Instant::now();
    let stop = sup.run(&["--littleboss=stop"]);
    eprintln!("stop during start-up took {:?}", t0.elapsed());
    assert_eq!(stop.code(), Some(0), "{stop}\n{}", sup.logs());
    assert_eq!(sup.wait_code(), 0);
    wait_gone(child, "the child");
    assert!(!env.socket(NAME).exists(), "the socket is removed");
}

#[test]
fn stop_right_after_start() {
    let env = Env::new();
    let mut codes = Vec::new();
    for round in 0..5 {
        let sup = env.start_nowait(bin!("lb-http"), NO_ARGS);
        let socket = env.socket(NAME);
        // As soon as the control socket answers: the child has just been started.
        let response = wait_for(DEADLINE, "the control socket", || {
            if sup.try_exit().is_some() {
                panic!("the supervisor exited\n{}", sup.logs());
            }
            let mut stream = raw::connect(&socket).ok()?;
            stream.write_all(&wire::stop_request()).ok()?;
            raw::read_response(&mut stream).ok().flatten()
        });
        let code = match response {
            Response::Stopped { code } => code,
            other => panic!("round {round}: stop answered {other:?}\n{}", sup.logs()),
        };
        let exit = sup.wait_code();
        eprintln!(
            "round {round}: stop right after start: stopped with {code}, supervisor exit {exit}"
        );
        assert_eq!(exit, code);
        if code != 0 {
            eprintln!("round {round} log:\n{}", sup.logs());
        }
        codes.push(code);
        assert!(!env.socket(NAME).exists(), "the socket is removed");
        let children: Vec<u32> = sup
            .stderr()
            .lines()
            .filter_map(|l| l.split("started child pid ").nth(1))
            .filter_map(|rest| rest.split(';').next()?.parse().ok())
            .collect();
        for child in children {
            wait_gone(child, "the child");
        }
    }
    assert!(
        codes.iter().all(|&c| c == 0),
        "a stop right after start exits 0 (the child never failed): {codes:?}"
    );
}

#[test]
fn stop_before_the_child_said_hello() {
    let env = Env::new();
    let sup = env.start_nowait(bin!("lb-slow-hello"), NO_ARGS);
    let socket = env.socket("lbslow");
    // The control socket answers at once; the child says hello only after 500 ms.
    let response = wait_for(DEADLINE, "the control socket", || {
        if sup.try_exit().is_some() {
            panic!("the supervisor exited\n{}", sup.logs());
        }
        raw::ask(
            &socket,
            &littleboss_tests::attack_support::wire::stop_request(),
        )
        .ok()
    });
    let exit = sup.wait_code();
    eprintln!("stop before hello: answered {response:?}, supervisor exit {exit}");
    assert_eq!(
        response,
        Response::Stopped { code: 0 },
        "a child asked to stop before its hello winds down cleanly\n{}",
        sup.logs()
    );
    assert_eq!(exit, 0, "{}", sup.logs());
    assert!(!socket.exists(), "the socket is removed");
}

#[test]
fn requests_during_a_stop_are_answered() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), &["--ignore-lameduck"]);
    let child = sup.child_pid();
    let socket = env.socket(NAME);
    // The child ignores lameduck: the stop lasts its lameduck time (2 s).
    let stops: Vec<_> = (0..3)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || raw::ask(&socket, &wire::stop_request()))
        })
        .collect();
    let status = wait_for(DEADLINE, "state stopping", || {
        let status = raw::status(&socket);
        (status.state == "stopping").then_some(status)
    });
    assert_eq!(status.child_pid, Some(child));
    let path = bin!("lb-http").to_str().expect("a UTF-8 path").as_bytes();
    let reload = raw::ask(&socket, &wire::reload_request(path, None, &[])).expect("an answer");
    assert_eq!(
        reload.failed(),
        Some("lbhttp is stopping"),
        "a reload during a stop is refused"
    );
    for (i, stop) in stops.into_iter().enumerate() {
        let answer = stop.join().expect("the thread").expect("an answer");
        assert_eq!(
            answer,
            Response::Stopped { code: 1 },
            "stop {i}: every stop waiter hears the one exit code"
        );
    }
    assert_eq!(sup.wait_code(), 1);
    wait_gone(child, "the child");
}

#[test]
fn a_second_sigterm_kills_a_child_that_ignores_lameduck() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), &["--ignore-lameduck"]);
    let child = sup.child_pid();
    sup.signal(Signal::TERM);
    sup.wait_for_log("SIGTERM: stopping");
    let t0 = Instant::now();
    sup.signal(Signal::TERM);
    assert_eq!(sup.wait_code(), 1, "{}", sup.logs());
    let took = t0.elapsed();
    eprintln!("a second SIGTERM ended the supervisor in {took:?}");
    assert!(
        sup.stderr()
            .contains("SIGTERM again: killing the children now"),
        "{}",
        sup.logs()
    );
    assert!(
        sup.stderr().contains("was killed: SIGTERM arrived twice"),
        "{}",
        sup.logs()
    );
    assert!(is_gone(child));
    assert!(!env.socket(NAME).exists(), "the socket is removed");
}

#[test]
fn a_supervisor_killed_during_a_reload_leaves_no_child() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let (reload, new) = reload_to_never_ready(&env, &sup);
    sup.signal(Signal::KILL);
    sup.wait_exit();
    wait_gone(old, "the old child of a killed supervisor");
    wait_gone(new, "the new child of a killed supervisor");
    assert_eq!(
        reload.wait_code(),
        1,
        "the reload command fails\n{}",
        reload.logs()
    );
    wait_for(DEADLINE, "the port to be free", || {
        port_is_free(addr).then_some(())
    });
}
