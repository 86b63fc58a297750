//! The child channel, from both sides.
//!
//! What a program takes for its channel: `LITTLEBOSS_CHANNEL_FD` must name a unix
//! `SOCK_SEQPACKET` (or `SOCK_STREAM`) socket whose peer is the program's parent, or
//! the program exits 1 with a clear message and writes nothing on stdout (`lb-http` started with the
//! variable set to stdout, a pipe, a socket of another type, one of another process);
//! and when `LITTLEBOSS_SUPERVISOR_PID` names another process than its parent (a
//! program that a supervised child started), it ignores both and runs unsupervised.
//!
//! Attacks on the supervisor's side: a reload (a hand-encoded `Reload` request) to
//! `lb-fake-child`, a program that poses as a child and sends what no child
//! should. Each reload must fail with a reason, the fake child must be killed, the old
//! child must keep serving, and the failure must be counted.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use littleboss_tests::attack_support::wire::{self, Response};
use littleboss_tests::attack_support::{Serving, fd_count, raw};
use littleboss_tests::{
    COMMAND_TIMEOUT, Env, NO_ARGS, Outcome, Signal, Supervisor, bin, get, run_for, wait_gone,
};
use rustix::io::FdFlags;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

// ---------------------------------------------------------------------------------
// What a program takes for its channel
// ---------------------------------------------------------------------------------

/// `env`, to start a helper with variables of its own (it execs the helper, which
/// keeps its pid and its parent).
const ENV: &str = "/usr/bin/env";

/// What `lb-http` says when `LITTLEBOSS_CHANNEL_FD=FD` is no channel, for reason `why`.
fn not_a_channel(fd: i32, why: &str) -> String {
    format!(
        "littleboss: lbhttp: LITTLEBOSS_CHANNEL_FD={fd} is not a littleboss channel ({why}); \
         was this started by a littleboss supervisor?"
    )
}

/// Checks that `lb-http` refused its channel: exit code 1, `message` on stderr, nothing
/// on stdout, nothing served.
#[track_caller]
fn assert_refused(outcome: &Outcome, message: &str) {
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains(message),
        "lacks {message:?}: {outcome}"
    );
    assert_eq!(outcome.stdout, "", "{outcome}");
    assert!(!outcome.stderr.contains("serving"), "{outcome}");
}

/// Runs `lb-http` with `fd` inherited at its own number and named by
/// `LITTLEBOSS_CHANNEL_FD`; through `sh` (then its parent) if `via_shell`.
fn run_with_channel_fd(env: &Env, fd: BorrowedFd<'_>, via_shell: bool) -> Outcome {
    run_with_channel_fd_and(env, fd, via_shell, None)
}

/// [`run_with_channel_fd`], with `LITTLEBOSS_SUPERVISOR_PID` set to `supervisor`.
fn run_with_channel_fd_and(
    env: &Env,
    fd: BorrowedFd<'_>,
    via_shell: bool,
    supervisor: Option<u32>,
) -> Outcome {
    let raw = fd.as_raw_fd();
    let mut command = if via_shell {
        // Not `exec`: with a command after it, the shell forks lb-http and waits.
        let mut sh = env.command(Path::new("/bin/sh"));
        sh.args(["-c", "\"$0\"; exit $?"]).arg(bin!("lb-http"));
        sh
    } else {
        env.command(bin!("lb-http"))
    };
    command.env("LITTLEBOSS_CHANNEL_FD", raw.to_string());
    if let Some(pid) = supervisor {
        command.env("LITTLEBOSS_SUPERVISOR_PID", pid.to_string());
    }
    // `fd` is open in this process until `run_for` returns.
    leave_open(&mut command, fd);
    run_for(command, COMMAND_TIMEOUT)
}

/// Makes `command`'s process inherit `fd` (close-on-exec cleared in the new process
/// only). `fd` must stay open in this process until the command has started.
fn leave_open(command: &mut std::process::Command, fd: BorrowedFd<'_>) {
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the forked process before exec and makes one
    // async-signal-safe call (fcntl) on an fd number taken before the fork; it
    // allocates nothing and takes no lock. The caller keeps `fd` open until the
    // command has started, so the forked copy of the number is open and is that fd.
    unsafe {
        command.pre_exec(move || {
            // SAFETY: see above: the number is open in the forked process.
            let fd = BorrowedFd::borrow_raw(raw);
            rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
            Ok(())
        });
    }
}

#[test]
fn stdout_as_the_channel_is_refused_and_nothing_is_written_to_it() {
    let env = Env::new();
    // Stdout a pipe (captured by the test).
    let outcome = env.run(
        Path::new(ENV),
        &[
            "LITTLEBOSS_CHANNEL_FD=1",
            bin!("lb-http").to_str().expect("UTF-8"),
        ],
    );
    assert_refused(&outcome, &not_a_channel(1, "a pipe, not a socket"));
    // Stdout a file.
    let process = env.spawn(
        Path::new(ENV),
        &[
            "LITTLEBOSS_CHANNEL_FD=1",
            bin!("lb-http").to_str().expect("UTF-8"),
        ],
    );
    process.assert_exit(1, &not_a_channel(1, "a file, not a socket"));
    assert_eq!(process.stdout(), "", "{}", process.logs());
}

#[test]
fn a_closed_fd_number_is_refused() {
    let env = Env::new();
    let outcome = env.run(
        Path::new(ENV),
        &[
            "LITTLEBOSS_CHANNEL_FD=987",
            bin!("lb-http").to_str().expect("UTF-8"),
        ],
    );
    assert_refused(&outcome, &not_a_channel(987, "not an open fd"));
}

#[test]
fn a_pipe_is_refused() {
    let env = Env::new();
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    let outcome = run_with_channel_fd(&env, read.as_fd(), false);
    assert_refused(
        &outcome,
        &not_a_channel(read.as_raw_fd(), "a pipe, not a socket"),
    );
    let outcome = run_with_channel_fd(&env, write.as_fd(), false);
    assert_refused(
        &outcome,
        &not_a_channel(write.as_raw_fd(), "a pipe, not a socket"),
    );
}

#[test]
fn a_socket_of_another_type_is_refused() {
    let env = Env::new();
    // (A stream socket is a channel: the one macOS uses.)
    let (datagram, _peer) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socketpair");
    let outcome = run_with_channel_fd(&env, datagram.as_fd(), false);
    assert_refused(
        &outcome,
        &not_a_channel(
            datagram.as_raw_fd(),
            "a datagram socket, not a seqpacket or stream socket",
        ),
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let outcome = run_with_channel_fd(&env, udp.as_fd(), false);
    assert_refused(
        &outcome,
        &not_a_channel(udp.as_raw_fd(), "not a unix-domain socket"),
    );
}

/// A pair of connected `SOCK_SEQPACKET` unix sockets, made by this process (their
/// peer).
fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socketpair")
}

#[test]
fn a_seqpacket_socket_whose_peer_is_not_the_parent_is_refused() {
    let env = Env::new();
    // This process made the pair, but `sh` is lb-http's parent.
    let (ours, theirs) = seqpacket_pair();
    let outcome = run_with_channel_fd(&env, theirs.as_fd(), true);
    assert_refused(
        &outcome,
        &format!(
            "LITTLEBOSS_CHANNEL_FD={} is not a littleboss channel (its peer is pid {}, not \
             the parent process, pid ",
            theirs.as_raw_fd(),
            std::process::id()
        ),
    );
    // Nothing was sent to the socket's owner either.
    let nothing = rustix::net::recv(&ours, &mut [0u8; 16], rustix::net::RecvFlags::DONTWAIT);
    assert_eq!(nothing.err(), Some(rustix::io::Errno::AGAIN));
    // A socket of the right type with no peer at all.
    let unconnected = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    let outcome = run_with_channel_fd(&env, unconnected.as_fd(), false);
    assert_refused(
        &outcome,
        &not_a_channel(
            unconnected.as_raw_fd(),
            "its peer is not known: not connected, or outside this pid namespace",
        ),
    );
}

/// A child whose supervisor died before it looked at its channel: the variables name
/// the supervisor and the fd is its channel, but its parent is another process now. It
/// never takes the unsupervised path (binding the listeners itself and keeping the
/// port from the next supervisor): it says so and exits, serving nothing.
#[test]
fn a_child_whose_supervisor_is_gone_exits_without_serving() {
    let env = Env::new();
    // This process made the pair: it stands for the supervisor, and `sh` is lb-http's
    // parent, as init (or a subreaper) would be once the supervisor has died.
    let (ours, theirs) = seqpacket_pair();
    let us = std::process::id();
    let outcome = run_with_channel_fd_and(&env, theirs.as_fd(), true, Some(us));
    assert_refused(
        &outcome,
        &format!(
            "littleboss: lbhttp: the supervisor that started this process (pid {us}) is \
             gone; exiting, binding nothing"
        ),
    );
    // It did not say hello to a supervisor it knows is gone.
    let nothing = rustix::net::recv(&ours, &mut [0u8; 16], rustix::net::RecvFlags::DONTWAIT);
    assert_eq!(nothing.err(), Some(rustix::io::Errno::AGAIN));
}

/// On Linux the parent-death signal fires when the parent's thread that forked the
/// child ends. Here a thread of this process stands for the supervisor: it starts
/// `lb-reload-persist` (which waits 60 s unless lameduck comes), answers its hello, and
/// ends, while this process lives on and keeps the channel open, so nothing but the
/// signal can tell the child. It must wind down (exit 0, `wound down`), not be killed.
#[test]
#[cfg(target_os = "linux")]
fn a_child_gets_sigterm_when_the_thread_that_started_it_ends_and_winds_down() {
    let env = Env::new();
    let (ours, theirs) = seqpacket_pair();
    let us = std::process::id().to_string();
    let raw = theirs.as_raw_fd().to_string();
    let vars = [
        ("LITTLEBOSS_CHANNEL_FD", raw.as_str()),
        ("LITTLEBOSS_SUPERVISOR_PID", us.as_str()),
    ];
    let child = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let child = env.spawn_prepared(
                    bin!("lb-reload-persist"),
                    &["--exit-after-ms=60000"],
                    &vars,
                    |command| leave_open(command, theirs.as_fd()),
                );
                rustix::net::sockopt::set_socket_timeout(
                    &ours,
                    rustix::net::sockopt::Timeout::Recv,
                    Some(COMMAND_TIMEOUT),
                )
                .expect("SO_RCVTIMEO");
                // Its hello comes after its SIGTERM handler is in place.
                let mut hello = [0u8; 1024];
                let (n, _) = rustix::net::recv(&ours, &mut hello, rustix::net::RecvFlags::empty())
                    .expect("the child's hello");
                assert!(n > 2, "a hello, not an end of file");
                // A welcome with no listeners (variant 0, an empty list), protocol 1.
                let welcome = wire::message(1, &[0, 0]);
                rustix::net::send(&ours, &welcome, rustix::net::SendFlags::empty())
                    .expect("send the welcome");
                child
            })
            .join()
            .expect("the starting thread")
    });
    // The thread that forked it has ended; the channel is still open here.
    let status = child.wait_exit();
    assert!(status.success(), "{status}: {}", child.stderr());
    assert!(child.stderr().contains("wound down"), "{}", child.stderr());
    drop(ours);
}

#[test]
fn a_supervisor_pid_that_is_not_a_pid_is_refused() {
    let env = Env::new();
    let outcome = env.run(
        Path::new(ENV),
        &[
            "LITTLEBOSS_CHANNEL_FD=1",
            "LITTLEBOSS_SUPERVISOR_PID=me",
            bin!("lb-http").to_str().expect("UTF-8"),
        ],
    );
    assert_refused(
        &outcome,
        "littleboss: lbhttp: LITTLEBOSS_SUPERVISOR_PID=\"me\" is not a pid; was this \
         started by a littleboss supervisor?",
    );
}

#[test]
fn channel_variables_meant_for_another_process_are_ignored() {
    let env = Env::new();
    assert_ne!(
        std::process::id(),
        1,
        "the test's own pid is the one named below"
    );
    // Its parent is this test, not pid 1: it runs unsupervised, stdout untouched.
    let process = env.spawn(
        Path::new(ENV),
        &[
            "LITTLEBOSS_CHANNEL_FD=1",
            "LITTLEBOSS_SUPERVISOR_PID=1",
            bin!("lb-http").to_str().expect("UTF-8"),
        ],
    );
    let addr = process.wait_serving(process.pid(), "http");
    let answer = get(addr).unwrap_or_else(|e| panic!("GET: {e}\n{}", process.logs()));
    assert_eq!(answer.pid, process.pid());
    assert_eq!(answer.mode, "bypass");
    process.signal(Signal::TERM);
    assert_eq!(process.wait_code(), 0, "{}", process.logs());
    assert_eq!(process.stdout(), "", "{}", process.logs());
    assert!(!process.stderr().contains("channel"), "{}", process.logs());
}

#[test]
fn a_program_a_supervised_child_starts_runs_unsupervised() {
    let env = Env::new();
    let sup = env.start(bin!("lb-grandparent"), &[bin!("lb-http")]);
    let child = sup.child_pid();
    let line = sup.wait_for_log(&format!("lb-grandparent: pid {child} started "));
    let grandchild: u32 = line
        .rsplit(' ')
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    sup.track(grandchild);
    // It inherited both variables, and its parent is not the supervisor.
    let environ = std::fs::read(format!("/proc/{grandchild}/environ")).expect("its environment");
    let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    let supervisor_pid = format!("LITTLEBOSS_SUPERVISOR_PID={}", sup.pid());
    assert!(vars.contains(&supervisor_pid.as_bytes()), "{vars:?}");
    assert!(
        vars.iter()
            .any(|v| v.starts_with(b"LITTLEBOSS_CHANNEL_FD=")),
        "{vars:?}"
    );
    let addr = sup.wait_serving(grandchild, "http");
    let answer = get(addr).unwrap_or_else(|e| panic!("GET: {e}\n{}", sup.logs()));
    assert_eq!(answer.pid, grandchild);
    assert_eq!(answer.mode, "bypass");
    assert_eq!(get(sup.addr("http")).expect("GET").pid, child);
    assert!(
        !sup.stderr().contains("not a littleboss channel"),
        "{}",
        sup.logs()
    );
    let stopped = sup.run(&["--littleboss=stop"]);
    assert_eq!(stopped.code(), Some(0), "{stopped}\n{}", sup.logs());
    wait_gone(grandchild, "the grandchild");
}

// ---------------------------------------------------------------------------------
// Attacks on the supervisor's side
// ---------------------------------------------------------------------------------

/// A hand-encoded `Reload` request to `lb-fake-child MODE`.
fn fake_child_reload(mode: &str) -> Vec<u8> {
    let fake = bin!("lb-fake-child");
    let path = fake.to_str().expect("a UTF-8 path").as_bytes();
    let args: [&[u8]; 2] = [b"lb-fake-child", mode.as_bytes()];
    wire::reload_request(path, Some(&args), &[])
}

/// Reloads `sup` (an `lb-http` supervisor) to the fake child in `mode`, which becomes
/// the serving child: its pid.
fn serving_fake_child(env: &Env, sup: &Supervisor<'_>, mode: &str) -> u32 {
    let response = raw::ask(&env.socket("lbhttp"), &fake_child_reload(mode))
        .unwrap_or_else(|e| panic!("{mode}: no answer to the reload: {e}\n{}", sup.logs()));
    let Response::Reloaded { new_pid, .. } = response else {
        panic!("{mode}: the reload failed: {response:?}\n{}", sup.logs());
    };
    sup.track(new_pid);
    new_pid
}

/// After the fake child `fake` was killed, the binary before it (not `first`, which
/// it replaced) serves again, and `stop` ends with code 0.
#[track_caller]
fn fell_back(sup: &Supervisor<'_>, first: u32, fake: u32) {
    wait_gone(fake, "the fake child, killed");
    sup.wait_for_log("falling back to");
    let served = sup.wait_for("the previous binary to serve again", || {
        get(sup.addr("http")).ok()
    });
    assert!(served.pid != first && served.pid != fake, "{}", sup.logs());
    let stopped = sup.run(&["--littleboss=stop"]);
    assert_eq!(stopped.code(), Some(0), "{stopped}\n{}", sup.logs());
}

/// Reloads a fresh `lb-http` supervisor to the fake child in `mode`; checks the refusal
/// (its reason contains `expected`) and that nothing else changed. Returns the
/// supervisor's log.
fn reload_to_fake_child(mode: &str, expected: &str) -> String {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket("lbhttp"));
    let response = raw::ask(&serving.socket, &fake_child_reload(mode))
        .unwrap_or_else(|e| panic!("{mode}: no answer to the reload: {e}\n{}", sup.logs()));
    let Response::Failed { reason } = &response else {
        panic!(
            "{mode}: the reload did not fail: {response:?}\n{}",
            sup.logs()
        );
    };
    assert!(
        reason.contains(expected),
        "{mode}: the reason {reason:?} lacks {expected:?}\n{}",
        sup.logs()
    );
    assert!(reason.contains("was killed"), "{mode}: {reason}");
    let pid: u32 = reason
        .strip_prefix("new child pid ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{mode}: no pid in {reason:?}"));
    sup.track(pid);
    wait_gone(pid, "the fake child");
    assert!(
        sup.stderr()
            .contains(&format!("lb-fake-child: pid {pid} sending {mode}")),
        "{mode}: the fake child ran\n{}",
        sup.logs()
    );
    serving.assert_unchanged(&sup, &format!("a reload to a fake child ({mode})"));
    let status = sup.status();
    assert_eq!(status["failures"], 1, "{mode}: {status}");
    assert_eq!(status["reloads"], 0, "{mode}: {status}");
    assert!(status["previous_path"].is_null(), "{mode}: {status}");
    sup.stderr()
}

/// A ready serving child that the supervisor kills for breaking the protocol is a
/// crashed child, as one killed from outside would be: the previous binary takes over
/// (fallback) and the service goes on, instead of stopping.
#[test]
fn a_ready_child_killed_for_sending_garbage_falls_back_and_the_service_goes_on() {
    let env = Env::new();
    let trigger = env.path().join("trigger");
    let shown = trigger.to_str().expect("a UTF-8 path");
    let sup = env.start_with(
        bin!("lb-http"),
        NO_ARGS,
        &[("LB_FAKE_CHILD_TRIGGER", shown)],
    );
    sup.wait_running();
    let first = sup.child_pid();
    let new_pid = serving_fake_child(&env, &sup, "garbage-when-told");
    wait_gone(first, "the first child, retired");
    std::fs::write(&trigger, b"now").expect("the trigger");
    wait_gone(new_pid, "the fake child, killed");
    let logs = sup.logs();
    assert!(
        logs.contains("it sent a malformed message"),
        "the log says what it sent\n{logs}"
    );
    let status = sup.status();
    assert_eq!(status["restarts"], 1, "{status}");
    fell_back(&sup, first, new_pid);
}

/// A serving child that stops reading its channel while the supervisor has things to
/// tell it (here: it hands connections over without reading the answers) does not
/// wedge the supervisor: its answers pile up, it is killed as not reading, its exit is
/// seen and reaped, the previous binary takes over, and `stop` ends.
#[test]
fn a_child_that_stops_reading_its_channel_is_killed_and_the_service_goes_on() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    sup.wait_running();
    let first = sup.child_pid();
    let new_pid = serving_fake_child(&env, &sup, "deaf");
    wait_gone(first, "the first child, retired");
    sup.wait_for_log("it does not read its channel");
    fell_back(&sup, first, new_pid);
}

/// What a child hands over must be a connection of the listener it names: a listening
/// socket, a unix socket handed over as a connection of a TCP listener and a
/// connection that carries more than 16 KiB are each refused with the reason and given
/// back, and the child, which broke no rule of the channel, goes on serving.
#[test]
fn forged_and_oversized_hand_overs_are_refused_with_the_reason() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    sup.wait_running();
    let new_pid = serving_fake_child(&env, &sup, "forged");
    let refused = format!("refused 1 connection that child pid {new_pid} handed over: ");
    for reason in [
        "a connection's fd is a listening socket",
        "a connection is not one of listener \"http\"",
        "a connection carries 17000 bytes read, more than 16384",
    ] {
        sup.wait_for_log(&format!("{refused}{reason}"));
    }
    let status = sup.status();
    assert_eq!(status["child_pid"], new_pid, "{status}");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    // It does not wind down at lameduck: it is killed, and the stop's code says so.
    let stopped = sup.run(&["--littleboss=stop"]);
    assert_eq!(stopped.code(), Some(1), "{stopped}\n{}", sup.logs());
    assert!(stopped.stdout.contains("exit code 1"), "{stopped}");
}

#[test]
fn a_child_that_sends_garbage_instead_of_hello_is_refused() {
    reload_to_fake_child("garbage", "it sent a malformed message");
}

#[test]
fn a_child_of_another_service_is_refused() {
    // (The supervisor sends `Refused` and kills the process group at once, so whether
    // the fake child reads the refusal first is a race: not checked.)
    reload_to_fake_child("wrong-name", "it is service \"intruder\", not \"lbhttp\"");
}

#[test]
fn a_child_of_another_protocol_version_is_refused() {
    reload_to_fake_child(
        "wrong-version",
        &format!(
            "peer speaks littleboss protocol 9, this binary speaks 1-{}",
            littleboss::PROTOCOL
        ),
    );
}

#[test]
fn a_child_that_says_ready_before_hello_is_refused() {
    reload_to_fake_child("ready-first", "it sent an unexpected message: Ready");
}

#[test]
fn a_child_that_sends_fds_is_refused() {
    reload_to_fake_child("with-fds", "it sent fds");
}

#[test]
fn an_oversized_hello_is_refused() {
    reload_to_fake_child("oversized", "message longer than 65536 bytes");
}

#[test]
fn garbage_after_a_good_hello_is_refused() {
    let log = reload_to_fake_child("garbage-after-hello", "it sent a malformed message");
    assert!(
        log.contains("bytes and 1 control messages from the supervisor"),
        "the fake child was welcomed with its listener fds first:\n{log}"
    );
}

/// Reloads a fresh `lb-http` supervisor to a fake child that declares a timing of
/// `u64::MAX` ms in its hello and otherwise behaves; then stops the supervisor.
///
/// The child's own times govern it (`PROTOCOL.md`), so a reload may legitimately wait
/// for an endless settle time; but nothing may wedge: the stop is answered, and it
/// cancels a reload still waiting.
fn huge_timing(mode: &str) {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket("lbhttp"));
    let mut reload = raw::connect(&serving.socket).expect("connect");
    reload
        .write_all(&fake_child_reload(mode))
        .expect("send the reload");
    reload
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a timeout");
    let early = raw::read_response(&mut reload);
    eprintln!("{mode}: within 5 s the reload answered {early:?}");
    // The supervisor's log is written by a thread of its own: the line may follow the
    // answer.
    let line = sup.wait_for_log("reloading: started pid ");
    let fake_pid = std::iter::once(line.as_str()).find_map(|l| {
        l.split("reloading: started pid ")
            .nth(1)?
            .split(' ')
            .next()?
            .parse::<u32>()
            .ok()
    });
    let fake_pid = fake_pid.unwrap_or_else(|| panic!("{mode}: no fake child\n{}", sup.logs()));
    sup.track(fake_pid);
    assert!(
        sup.try_exit().is_none(),
        "{mode}: the supervisor exited\n{}",
        sup.logs()
    );
    let stop = raw::ask(&serving.socket, &wire::stop_request());
    eprintln!("{mode}: the stop answered {stop:?}");
    assert!(
        matches!(stop, Ok(Response::Stopped { .. })),
        "{mode}: no answer to the stop within {:?}: {stop:?}\n{}",
        raw::REPLY_TIMEOUT,
        sup.logs()
    );
    if early.is_err() {
        reload
            .set_read_timeout(Some(raw::REPLY_TIMEOUT))
            .expect("a timeout");
        let late = raw::read_response(&mut reload);
        eprintln!("{mode}: after the stop the reload answered {late:?}");
        let late = late.ok().flatten();
        assert!(
            late.as_ref()
                .and_then(Response::failed)
                .is_some_and(|r| r.contains("cancelled: lbhttp is stopping")),
            "{mode}: the pending reload is cancelled by the stop: {late:?}\n{}",
            sup.logs()
        );
    }
    sup.wait_exit();
    wait_gone(serving.child, "the first child");
    wait_gone(fake_pid, "the fake child");
}

#[test]
fn a_hello_with_a_huge_ready_timeout_does_not_wedge_the_supervisor() {
    huge_timing("huge-ready-timeout");
}

#[test]
fn a_hello_with_a_huge_settle_time_does_not_wedge_the_supervisor() {
    huge_timing("huge-settle");
}

#[test]
fn a_hello_with_a_huge_lameduck_does_not_wedge_the_supervisor() {
    huge_timing("huge-lameduck");
}

/// A reload request (path, arguments, listener flags) and a part of its refusal.
type BadReload<'a> = (
    Vec<u8>,
    Option<Vec<&'a [u8]>>,
    Vec<(&'a str, &'a str)>,
    String,
);

#[test]
fn bad_reload_requests_fail_cleanly_and_leak_no_fd() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket("lbhttp"));
    let fds_before = fd_count(sup.pid()).expect("the supervisor's fds");
    let not_executable = env.path().join("not-executable");
    std::fs::write(&not_executable, b"#!/bin/sh\n").expect("write");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("an address").to_string();
    let lb_http = bin!("lb-http").to_str().expect("a UTF-8 path");
    let missing = env.path().join("missing");
    let cases: Vec<BadReload<'_>> = vec![
        (
            missing.to_str().expect("UTF-8").into(),
            None,
            vec![],
            format!("cannot open {}", missing.display()),
        ),
        (
            env.path().to_str().expect("UTF-8").into(),
            None,
            vec![],
            "is not a regular file".into(),
        ),
        (
            not_executable.to_str().expect("UTF-8").into(),
            None,
            vec![],
            "is not executable".into(),
        ),
        (b"/bin/tr\0ue".to_vec(), None, vec![], "cannot open".into()),
        (
            lb_http.into(),
            None,
            vec![("http", busy_addr.as_str())],
            format!("bind http on {busy_addr}: address in use"),
        ),
        (
            lb_http.into(),
            None,
            vec![("nope", ":0")],
            "no listener named \"nope\"; the listeners are http, spare".into(),
        ),
        (
            lb_http.into(),
            None,
            vec![("http", "nonsense")],
            "flag --http: address \"nonsense\" is not HOST:PORT".into(),
        ),
        (
            lb_http.into(),
            Some(vec![b"lb-http", b"--exit-at-start"]),
            vec![],
            "exited with code 3".into(),
        ),
        (
            lb_http.into(),
            Some(vec![b"lb-http", b"--bad\0arg"]),
            vec![],
            "cannot start".into(),
        ),
    ];
    for (path, args, listeners, expected) in &cases {
        let request = wire::reload_request(path, args.as_deref(), listeners);
        let answer = raw::ask(&serving.socket, &request).expect("an answer");
        let reason = answer
            .failed()
            .unwrap_or_else(|| panic!("{expected}: the reload did not fail: {answer:?}"));
        assert!(
            reason.contains(expected.as_str()),
            "the reason {reason:?} lacks {expected:?}"
        );
        serving.assert_unchanged(&sup, &format!("a reload that failed with {reason:?}"));
    }
    let status = sup.status();
    eprintln!(
        "{} bad reloads: failures {}, reloads {}",
        cases.len(),
        status["failures"],
        status["reloads"]
    );
    assert_eq!(status["reloads"], 0);
    let fds_after = sup.wait_for("the supervisor's fds to settle", || {
        let now = fd_count(sup.pid())?;
        (now == fds_before).then_some(now)
    });
    assert_eq!(fds_after, fds_before);
}
