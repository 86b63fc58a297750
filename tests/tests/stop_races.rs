//! Stops that race a reload or a restart, and a reload that must not stall the
//! supervisor.
//!
//! - A stop after the serving child died while a reload to a child that never becomes
//!   ready was under way: the stop returns within the lameduck plus a margin, the reload
//!   is answered `cancelled`, the supervisor exits and no process of the service is left
//!   (no fallback child is started while stopping).
//! - The same for a persistent service (`persist = true`), and a stop while a
//!   persistent service waits out its restart backoff: nothing is started again after
//!   the stop.
//! - A stop command or a SIGTERM at twenty moments of a reload (before the supervisor
//!   has the request, before the new child says hello, while it is not ready, right as
//!   it becomes ready): each time the stop returns in time, the reload command is
//!   answered and nothing is left. A stop whose moment crosses the new child's ready
//!   message is the race this finds: it must not promote the child it is killing, nor
//!   fall back to the previous binary.
//! - A reload that moves a `unix:` listener onto a socket file a live process listens
//!   on with a full backlog: `status` still answers meanwhile (the supervisor must not
//!   probe the file with a blocking connect inside its loop; on Linux a blocking connect
//!   to a unix stream socket whose backlog is full waits until the listener accepts,
//!   here never).
//!
//! Every stop is bounded by the longest lameduck of the children it winds down plus
//! [`MARGIN`], so a stop that never returns fails the test in seconds; the guards kill
//! whatever is left.
//!
//! Helper programs: `lb-http` (service `lbhttp`, `lameduck = "2s"`), `lb-reload-gate`
//! (an `lbhttp` that is ready only once a file exists, `lameduck = "5s"`),
//! `lb-persist-gate` (service `lbpgate`, `persist = true`, ready once a file exists,
//! `lameduck = "2s"`) and `lb-unix` (service `lbsdunix`, a `unix:` listener `api`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use littleboss_tests::{
    DEADLINE, Env, NO_ARGS, POLL, Signal, Spawned, Supervisor, Value, bin, children_of, is_gone,
    kill, port_is_free, proc_exists, wait_for,
};

/// `lb-http`'s lameduck: its `#[littleboss::main]` declares `lameduck = "2s"`.
const LB_HTTP_LAMEDUCK: Duration = Duration::from_secs(2);

/// `lb-reload-gate`'s lameduck: `lameduck = "5s"`.
const GATE_LAMEDUCK: Duration = Duration::from_secs(5);

/// `lb-persist-gate`'s lameduck: `lameduck = "2s"`.
const PERSIST_GATE_LAMEDUCK: Duration = Duration::from_secs(2);

/// What a stop may take beyond the lameduck of the children it winds down: starting
/// the command, the exits and the answer, on a loaded two-core machine.
const MARGIN: Duration = Duration::from_secs(5);

/// How long what should be ending already (the supervisor once its stop returned, a
/// reload command the stop answered, the children) may take to be gone.
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// How long `status` may take to answer while a reload is pending.
const STATUS_WITHIN: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A pid field of a status (`child_pid`), if it is set.
fn pid_in(status: &Value, key: &str) -> Option<u32> {
    status[key]
        .as_u64()
        .map(|pid| u32::try_from(pid).expect("a pid"))
}

/// A reload to `bin` (`lb-reload-gate` or `lb-persist-gate`) with
/// `--ready-when=GATE`, running in the background: its new child is ready only once the
/// file `gate` exists.
fn gated_reload(env: &Env, bin: &Path, gate: &Path) -> Spawned {
    let arg = format!("--ready-when={}", gate.display());
    env.spawn(bin, &["--littleboss=reload", "--", arg.as_str()])
}

/// Opens a gate: the gated new child becomes ready (within its 10 ms poll).
fn open_gate(gate: &Path) {
    std::fs::write(gate, b"").expect("create the gate file");
}

/// Waits until the supervisor's status says `reloading` and it has a child that is not
/// one of `known`: the reload's new child, whose pid it returns (tracked by the guard).
fn wait_reloading(sup: &Supervisor<'_>, known: &[u32]) -> u32 {
    sup.wait_reloading_state();
    sup.wait_for("the reload's new child", || {
        children_of(sup.pid())
            .into_iter()
            .find(|pid| !known.contains(pid))
    })
}

/// The supervisor's children now, each tracked so that the guard kills it.
fn children(sup: &Supervisor<'_>) -> BTreeSet<u32> {
    let now: BTreeSet<u32> = children_of(sup.pid()).into_iter().collect();
    for pid in &now {
        sup.track(*pid);
    }
    now
}

/// Polls `done` until it gives a value or `bound` passes, recording every child of
/// `sup` seen meanwhile. Returns the value (`None` if `bound` passed) and the children
/// seen that are not in `before`.
fn watch_children<T>(
    sup: &Supervisor<'_>,
    before: &BTreeSet<u32>,
    bound: Duration,
    mut done: impl FnMut() -> Option<T>,
) -> (Option<T>, Vec<u32>) {
    let deadline = Instant::now() + bound;
    let mut seen = BTreeSet::new();
    let value = loop {
        seen.extend(children(sup));
        if let Some(value) = done() {
            break Some(value);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(POLL);
    };
    seen.extend(children(sup));
    (value, seen.difference(before).copied().collect())
}

/// What the supervisor and its children wrote on their stderr after its first `from`
/// bytes.
fn logged_since(sup: &Supervisor<'_>, from: usize) -> String {
    let text = sup.stderr();
    text.get(from..).unwrap_or(&text).to_string()
}

/// How a stop ended: the stop command's (or, after a SIGTERM, the supervisor's) exit
/// code, and the children the supervisor had that it did not have when the stop was
/// sent.
#[derive(Debug)]
struct Stopped {
    code: i32,
    new_children: Vec<u32>,
}

/// Runs `--littleboss=stop` against `sup` and waits at most `bound` for it to return.
/// Panics if it does not (naming the children the supervisor started after the stop was
/// sent), if a signal killed it, or if its output is not `stopping NAME` and `stopped
/// NAME exit code N` with N its exit code.
fn stop_within(env: &Env, sup: &Supervisor<'_>, service: &str, bound: Duration) -> Stopped {
    let before = children(sup);
    let logged = sup.stderr().len();
    let stop = env.spawn(sup.bin(), &["--littleboss=stop"]);
    let (status, new_children) = watch_children(sup, &before, bound, || stop.try_exit());
    let Some(status) = status else {
        panic!(
            "`--littleboss=stop` did not return within {bound:?} (the lameduck plus \
             {MARGIN:?}); children the supervisor started after the stop was sent: \
             {new_children:?}; its children now: {:?}; stop printed so far: {:?}; the \
             service logged since the stop:\n{}",
            children_of(sup.pid()),
            stop.stdout(),
            logged_since(sup, logged)
        );
    };
    let code = status
        .code()
        .unwrap_or_else(|| panic!("the stop was killed ({status})\n{}", stop.logs()));
    assert_eq!(
        stop.stdout(),
        format!("stopping {service}\nstopped {service} exit code {code}\n"),
        "{}",
        stop.logs()
    );
    Stopped { code, new_children }
}

/// Sends SIGTERM to `sup` and waits at most `bound` for it to exit. Panics if it does
/// not (naming the children it started after the signal) or if a signal killed it.
fn term_within(sup: &Supervisor<'_>, bound: Duration) -> Stopped {
    let before = children(sup);
    let logged = sup.stderr().len();
    sup.signal(Signal::TERM);
    let (status, new_children) = watch_children(sup, &before, bound, || sup.try_exit());
    let Some(status) = status else {
        panic!(
            "the supervisor did not exit within {bound:?} of SIGTERM (the lameduck plus \
             {MARGIN:?}); children it started after the signal: {new_children:?}; its \
             children now: {:?}; the service logged since the signal:\n{}",
            children_of(sup.pid()),
            logged_since(sup, logged)
        );
    };
    let code = status
        .code()
        .unwrap_or_else(|| panic!("the supervisor was killed ({status})\n{}", sup.logs()));
    Stopped { code, new_children }
}

/// The code a stop may end with when the serving child was killed by a signal before
/// it: 1 (a signal counts as exit code 1, as for a child killed after its lameduck), or
/// 0 if a child that wound down on lameduck was the last one serving.
fn assert_stop_code(stopped: &Stopped) {
    assert!(
        matches!(stopped.code, 0 | 1),
        "the stop's exit code: {stopped:?}"
    );
}

/// Every pid the helper programs announced on the supervisor's stderr (which its
/// children share): `lb-...: pid PID ...` lines.
fn helper_pids(sup: &Supervisor<'_>) -> BTreeSet<u32> {
    sup.stderr()
        .lines()
        .filter_map(|line| {
            let (program, rest) = line.split_once(": pid ")?;
            if !program.starts_with("lb-") || program.contains(' ') {
                return None;
            }
            rest.split_once(' ')?.0.parse().ok()
        })
        .collect()
}

/// The pids `lb-persist-gate` said it started as (`lb-persist-gate: pid PID started`).
fn persist_gate_starts(sup: &Supervisor<'_>) -> BTreeSet<u32> {
    sup.stderr()
        .lines()
        .filter_map(|line| {
            line.strip_prefix("lb-persist-gate: pid ")?
                .strip_suffix(" started")?
                .parse()
                .ok()
        })
        .collect()
}

/// Checks that the stopped `sup` exits with `code`, that every process of the service
/// (`pids`, every pid its helpers announced, every child it was seen with) is gone, that
/// nothing listens on `addr` any more and that the control socket of `service` is
/// removed.
fn assert_all_gone(
    env: &Env,
    sup: &Supervisor<'_>,
    service: &str,
    code: i32,
    pids: &[u32],
    addr: SocketAddr,
) {
    let status = wait_for(GONE_WITHIN, "the supervisor to exit after the stop", || {
        sup.try_exit()
    });
    assert_eq!(
        status.code(),
        Some(code),
        "the supervisor's exit code is the stop's\n{}",
        sup.logs()
    );
    let mut all: BTreeSet<u32> = pids.iter().copied().collect();
    all.extend(helper_pids(sup));
    for pid in all {
        wait_for(
            GONE_WITHIN,
            &format!("process {pid} of the service to be gone after the stop"),
            || is_gone(pid).then_some(()),
        );
    }
    wait_for(
        GONE_WITHIN,
        &format!("nothing to listen on {addr} after the stop"),
        || port_is_free(addr).then_some(()),
    );
    assert!(
        !env.socket(service).exists(),
        "the control socket is removed"
    );
}

/// Waits (up to [`GONE_WITHIN`]) for a reload command to be answered, and returns its
/// exit code; panics if a signal killed it.
fn reload_answered(reload: &Spawned) -> i32 {
    let status: ExitStatus = wait_for(GONE_WITHIN, "the reload command to be answered", || {
        reload.try_exit()
    });
    status.code().unwrap_or_else(|| {
        panic!(
            "the reload command was killed ({status})\n{}",
            reload.logs()
        )
    })
}

/// Kills `pid` (SIGKILL, with its process group) and waits until the supervisor has
/// reaped it.
fn kill_and_reap(sup: &Supervisor<'_>, pid: u32) {
    kill(pid);
    sup.wait_for(
        &format!("the supervisor to reap the killed pid {pid}"),
        || (!proc_exists(pid)).then_some(()),
    );
}

// ---------------------------------------------------------------------------------------
// 1. The lost stop
// ---------------------------------------------------------------------------------------

#[test]
fn a_stop_after_the_serving_child_died_during_a_reload_returns_and_leaves_nothing() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let first = sup.child_pid();
    let addr = sup.addr("http");
    // A first reload, to a copy: the supervisor now has a previous binary to fall back to.
    let copy = env.copy_binary(bin!("lb-http"), "lb-http-copy");
    let outcome = env.run(&copy, &["--littleboss=reload"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}");
    let serving = sup.wait_for("the copy to serve", || {
        let status = sup.try_status().ok()?;
        let pid = pid_in(&status, "child_pid")?;
        (pid != first && status["state"] == "running").then_some(pid)
    });
    // A second reload, to a child that never becomes ready (its gate is never opened).
    let gate = env.path().join("never created");
    let reload = gated_reload(&env, bin!("lb-reload-gate"), &gate);
    let new = wait_reloading(&sup, &[first, serving]);
    sup.wait_for_log(&format!("lb-reload-gate: pid {new} holding http on "));
    // The serving child dies while the reload is under way; then the stop.
    kill_and_reap(&sup, serving);
    let stopped = stop_within(&env, &sup, "lbhttp", LB_HTTP_LAMEDUCK + MARGIN);
    assert_stop_code(&stopped);
    assert_eq!(reload_answered(&reload), 1, "{}", reload.logs());
    assert!(
        reload
            .stderr()
            .contains("reload of lbhttp failed: cancelled"),
        "the reload is answered with its cancellation\n{}",
        reload.logs()
    );
    let mut pids = vec![first, serving, new];
    pids.extend(stopped.new_children);
    assert_all_gone(&env, &sup, "lbhttp", stopped.code, &pids, addr);
}

// ---------------------------------------------------------------------------------------
// 2. The same with `persist = true`
// ---------------------------------------------------------------------------------------

#[test]
fn persist_a_stop_after_the_serving_child_died_during_a_reload_restarts_nothing() {
    let env = Env::new();
    let pgate = bin!("lb-persist-gate");
    let sup = env.start(pgate, NO_ARGS);
    let serving = sup.child_pid();
    let addr = sup.addr("http");
    let gate = env.path().join("never created");
    let reload = gated_reload(&env, pgate, &gate);
    let new = wait_reloading(&sup, &[serving]);
    sup.wait_for_log(&format!("lb-persist-gate: pid {new} serving http on "));
    kill_and_reap(&sup, serving);
    let started = persist_gate_starts(&sup);
    let stopped = stop_within(&env, &sup, "lbpgate", PERSIST_GATE_LAMEDUCK + MARGIN);
    assert!(
        stopped.new_children.is_empty(),
        "children started after the stop: {stopped:?}\n{}",
        sup.logs()
    );
    assert_stop_code(&stopped);
    assert_eq!(reload_answered(&reload), 1, "{}", reload.logs());
    assert!(
        reload
            .stderr()
            .contains("reload of lbpgate failed: cancelled"),
        "the reload is answered with its cancellation\n{}",
        reload.logs()
    );
    assert_all_gone(&env, &sup, "lbpgate", stopped.code, &[serving, new], addr);
    assert_eq!(
        persist_gate_starts(&sup),
        started,
        "no child was started after the stop\n{}",
        sup.logs()
    );
}

#[test]
fn persist_a_stop_during_the_restart_backoff_returns_and_restarts_nothing() {
    let env = Env::new();
    let sup = env.start(bin!("lb-persist-gate"), NO_ARGS);
    let addr = sup.addr("http");
    // Kill the child each time it is started again: the delay before the next start
    // doubles from 100 ms, so after the fourth kill the supervisor waits 800 ms with no
    // child. Stop then.
    let mut killed = Vec::new();
    loop {
        let child = sup.wait_for("a child to kill", || {
            pid_in(&sup.try_status().ok()?, "child_pid")
        });
        kill_and_reap(&sup, child);
        killed.push(child);
        let status = sup.wait_for("the supervisor to notice the kill", || {
            sup.try_status()
                .ok()
                .filter(|s| pid_in(s, "child_pid") != Some(child))
        });
        if killed.len() >= 4 && status["child_pid"].is_null() {
            break;
        }
        assert!(
            killed.len() < 7,
            "never saw the supervisor waiting to start it again: {status}\n{}",
            sup.logs()
        );
    }
    let started = persist_gate_starts(&sup);
    let stopped = stop_within(&env, &sup, "lbpgate", PERSIST_GATE_LAMEDUCK + MARGIN);
    assert!(
        stopped.new_children.is_empty(),
        "children started after the stop: {stopped:?}\n{}",
        sup.logs()
    );
    assert_stop_code(&stopped);
    assert_all_gone(&env, &sup, "lbpgate", stopped.code, &killed, addr);
    assert_eq!(
        persist_gate_starts(&sup),
        started,
        "no child was started after the stop\n{}",
        sup.logs()
    );
}

// ---------------------------------------------------------------------------------------
// 3. A stop or SIGTERM at many moments of a reload
// ---------------------------------------------------------------------------------------

/// How a stop is asked for.
#[derive(Clone, Copy, Debug)]
enum Ender {
    /// `--littleboss=stop`.
    Stop,
    /// SIGTERM to the supervisor.
    Term,
}

/// When, in a reload to `lb-reload-gate`, the stop is asked for.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// This many ms after the reload command was started: before the supervisor has
    /// the request, or before the new child has said hello.
    AfterMs(u64),
    /// As soon as the status says `reloading` (the new child may not have said hello).
    Reloading,
    /// Once the new child holds its listeners: it said hello and is not ready.
    Holding,
    /// This many ms after the new child's gate was opened (it holds its listeners and
    /// looks for the gate every 10 ms): right as it becomes ready.
    GateOpenedMs(u64),
    /// This many µs after the new child printed that it is ready (`lb-reload-gate: pid
    /// PID serving and ready`, just before it calls `lb.ready()`): the stop and the
    /// child's ready message cross.
    ReadyLineUs(u64),
}

/// The moments tried, in order: the short windows of a reload at several delays, then
/// SIGTERMs timed to the microsecond against the new child's ready message (a signal
/// reaches the supervisor at once; a stop command takes milliseconds to start).
const MOMENTS: [(Ender, Moment); 20] = [
    (Ender::Stop, Moment::AfterMs(0)),
    (Ender::Term, Moment::AfterMs(4)),
    (Ender::Stop, Moment::AfterMs(12)),
    (Ender::Term, Moment::Reloading),
    (Ender::Stop, Moment::Reloading),
    (Ender::Term, Moment::Holding),
    (Ender::Stop, Moment::Holding),
    (Ender::Stop, Moment::GateOpenedMs(0)),
    (Ender::Term, Moment::GateOpenedMs(0)),
    (Ender::Stop, Moment::GateOpenedMs(3)),
    (Ender::Term, Moment::GateOpenedMs(6)),
    (Ender::Term, Moment::GateOpenedMs(12)),
    (Ender::Term, Moment::ReadyLineUs(0)),
    (Ender::Term, Moment::ReadyLineUs(50)),
    (Ender::Term, Moment::ReadyLineUs(100)),
    (Ender::Term, Moment::ReadyLineUs(150)),
    (Ender::Term, Moment::ReadyLineUs(200)),
    (Ender::Term, Moment::ReadyLineUs(300)),
    (Ender::Term, Moment::ReadyLineUs(500)),
    (Ender::Term, Moment::ReadyLineUs(800)),
];

/// Starts `lb-http` supervised, starts a reload to `lb-reload-gate`, stops at `moment`
/// with `ender`, and checks that the stop returns within the lameduck plus a margin
/// (the longer of the two programs' lameducks: either child may be the serving one by
/// then), with exit code 0, that the reload command is answered (reloaded or failed),
/// and that nothing of the service is left.
fn stop_at(ender: Ender, moment: Moment) {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let gate = env.path().join("gate");
    let reload = gated_reload(&env, bin!("lb-reload-gate"), &gate);
    let holding = |sup: &Supervisor<'_>| {
        let new = wait_reloading(sup, &[old]);
        sup.wait_for_log(&format!("lb-reload-gate: pid {new} holding http on "));
        new
    };
    match moment {
        // The delay is the moment itself, chosen per iteration, not a wait for anything.
        Moment::AfterMs(ms) => std::thread::sleep(Duration::from_millis(ms)),
        Moment::Reloading => sup.wait_reloading_state(),
        Moment::Holding => {
            holding(&sup);
        }
        Moment::GateOpenedMs(ms) => {
            holding(&sup);
            open_gate(&gate);
            std::thread::sleep(Duration::from_millis(ms));
        }
        Moment::ReadyLineUs(us) => {
            let line = format!("lb-reload-gate: pid {} serving and ready", holding(&sup));
            open_gate(&gate);
            // Looks without pausing: the moment matters to the microsecond.
            let deadline = Instant::now() + DEADLINE;
            while !sup.stderr().contains(&line) {
                assert!(Instant::now() < deadline, "no {line:?}\n{}", sup.logs());
            }
            let seen = Instant::now();
            while seen.elapsed() < Duration::from_micros(us) {
                std::hint::spin_loop();
            }
        }
    }
    let bound = LB_HTTP_LAMEDUCK.max(GATE_LAMEDUCK) + MARGIN;
    let stopped = match ender {
        Ender::Stop => stop_within(&env, &sup, "lbhttp", bound),
        Ender::Term => term_within(&sup, bound),
    };
    assert_eq!(stopped.code, 0, "{stopped:?}\n{}", sup.logs());
    let code = reload_answered(&reload);
    assert!(
        matches!(code, 0 | 1),
        "the reload command is answered with reloaded or failed\n{}",
        reload.logs()
    );
    let mut pids = vec![old];
    pids.extend(stopped.new_children);
    assert_all_gone(&env, &sup, "lbhttp", 0, &pids, addr);
}

#[test]
fn a_stop_or_sigterm_at_any_moment_of_a_reload_returns_and_leaves_nothing() {
    for (i, (ender, moment)) in MOMENTS.into_iter().enumerate() {
        eprintln!("stop_races: moment {i}: {ender:?} at {moment:?}");
        stop_at(ender, moment);
    }
}

// ---------------------------------------------------------------------------------------
// 4. A reload that moves a unix listener onto a socket with a full backlog
// ---------------------------------------------------------------------------------------

/// A unix stream socket listening on `path` with a backlog of 0 that is never accepted
/// from, and the connections that fill its backlog (non-blocking connects until
/// `EAGAIN`): a blocking connect to it now waits until the listener accepts.
fn full_unix_socket(path: &Path) -> (OwnedFd, Vec<OwnedFd>) {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let addr = SocketAddrUnix::new(path).expect("a unix address");
    let socket = |flags| {
        rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)
            .expect("a unix socket")
    };
    let listener = socket(SocketFlags::CLOEXEC);
    rustix::net::bind(&listener, &addr).expect("bind the unix socket");
    rustix::net::listen(&listener, 0).expect("listen with a backlog of 0");
    let mut queued = Vec::new();
    loop {
        let client = socket(SocketFlags::CLOEXEC | SocketFlags::NONBLOCK);
        match rustix::net::connect(&client, &addr) {
            Ok(()) => queued.push(client),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("connect to {}: {e}", path.display()),
        }
        assert!(queued.len() < 1000, "the backlog never filled");
    }
    (listener, queued)
}

#[test]
fn status_answers_while_a_reload_moves_a_unix_listener_onto_a_full_socket() {
    let env = Env::new();
    let lb_unix = bin!("lb-unix");
    let first = env.path().join("api.sock");
    let sup = env.start(lb_unix, &[format!("--api={}", first.display())]);
    let child = sup.child_pid();
    let full = env.path().join("full.sock");
    let (_listener, _queued) = full_unix_socket(&full);
    let reload = env.spawn(
        lb_unix,
        &[
            "--littleboss=reload".to_string(),
            format!("--api={}", full.display()),
        ],
    );
    // Ask for the status until the reload command has been answered, once more after
    // that; each status must answer within STATUS_WITHIN.
    let deadline = Instant::now() + DEADLINE;
    let mut answered = 0;
    loop {
        let reload_ended = reload.try_exit().is_some();
        let status = env.spawn(lb_unix, &["--littleboss=status"]);
        let asked = Instant::now();
        let exit = loop {
            if let Some(exit) = status.try_exit() {
                break exit;
            }
            assert!(
                asked.elapsed() < STATUS_WITHIN,
                "`--littleboss=status` did not answer within {STATUS_WITHIN:?} while a \
                 reload moving api to {} (a live socket whose backlog is full) was \
                 pending; status answered {answered} time(s) before; the reload command \
                 {}",
                full.display(),
                if reload.try_exit().is_some() {
                    "has ended"
                } else {
                    "is still waiting"
                }
            );
            std::thread::sleep(POLL);
        };
        assert!(exit.success(), "{}", status.logs());
        answered += 1;
        if reload_ended {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload command was not answered within {DEADLINE:?}\n{}",
            reload.logs()
        );
        std::thread::sleep(POLL);
    }
    // A live process listens on that socket: the reload is refused, the old child
    // serves on.
    assert_eq!(reload.wait_code(), 1, "{}", reload.logs());
    assert!(
        reload.stderr().contains("reload of lbsdunix failed: "),
        "{}",
        reload.logs()
    );
    let status = sup.status();
    assert_eq!(pid_in(&status, "child_pid"), Some(child), "{status}");
    assert_eq!(
        status["listeners"]["api"],
        format!("unix:{}", first.display()),
        "{status}"
    );
    assert!(full.exists(), "the live socket file is untouched");
}
