//! Attacks on the control socket: bytes that are no request, frames that lie about their
//! length or never end, other versions and formats, silent clients, many clients, and
//! a client of another user; and control directories that others could reach.
//!
//! After each attack the supervisor must still serve: `status` answers, the child's pid
//! is unchanged, and a request is answered by it.
//!
//! The tests that need root (another user's client, another user's directory or parent,
//! a sticky parent of root's) are `#[ignore = "needs root"]`: `.ci/run` runs them as
//! root with `-- --ignored`.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use littleboss_tests::attack_support::wire::{self, Response};
use littleboss_tests::attack_support::{Serving, fd_count, raw, vm_kib};
use littleboss_tests::{
    COMMAND_TIMEOUT, Env, NO_ARGS, again_if_interrupted, bin, get, require_root, run_for,
    runnable_by_nobody,
};

/// The service name of `lb-http`.
const NAME: &str = "lbhttp";

/// A deterministic byte stream (xorshift64*), so that a failure can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Sends `bytes` on a new connection and returns the answer, which must be `Failed` (or
/// nothing: a closed connection); panics on any other answer.
fn refused(socket: &std::path::Path, bytes: &[u8], what: &str) -> Option<String> {
    match raw::exchange(socket, bytes) {
        Ok(None) => None,
        Ok(Some(Response::Failed { reason })) => Some(reason),
        Ok(Some(other)) => panic!("{what}: the supervisor answered {other:?}"),
        // The supervisor may reset a connection it stopped reading from.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("{what}: {e}"),
    }
}

#[test]
fn random_bytes_are_refused() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    // Raw noise: mostly a length prefix above the limit.
    for seed in 1..=16u64 {
        let len = 1 + (seed as usize * 257) % 4096;
        refused(
            &serving.socket,
            &noise(seed, len),
            &format!("noise seed {seed}"),
        );
    }
    // Well-framed version-1 messages with random bodies (never a bare Status or Stop:
    // bodies of at least two bytes).
    for seed in 100..300u64 {
        let body = noise(seed, 2 + (seed as usize % 62));
        let frame = wire::frame(&wire::message(wire::VERSION, &body));
        let reason = refused(&serving.socket, &frame, &format!("body seed {seed}"));
        assert!(reason.is_some(), "a framed message gets an answer");
    }
    serving.assert_unchanged(&sup, "random bytes");
}

#[test]
fn a_length_prefix_of_4_gib_is_refused_before_reading() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    let mut stream = raw::connect(&serving.socket).expect("connect");
    stream.write_all(&u32::MAX.to_le_bytes()).expect("write");
    let started = Instant::now();
    // The writing half stays open: the refusal must come from the header alone.
    let response = raw::read_response(&mut stream).expect("an answer");
    let reason = response
        .as_ref()
        .and_then(Response::failed)
        .unwrap_or_else(|| panic!("expected a refusal, got {response:?}"));
    assert!(
        reason.contains("frame of 4294967295 bytes; at most 65536"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused at once, not after the idle timeout ({:?})",
        started.elapsed()
    );
    // The log is written by a thread of its own: the line may follow the answer.
    sup.wait_for_log("bad control request");
    serving.assert_unchanged(&sup, "a 4 GiB length prefix");
}

#[test]
fn fifty_megabytes_without_a_frame_end_cost_no_memory() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    raw::status(&serving.socket);
    let rss_before = vm_kib(sup.pid(), "VmRSS").expect("VmRSS");
    let hwm_before = vm_kib(sup.pid(), "VmHWM").expect("VmHWM");
    let mut stream = raw::connect(&serving.socket).expect("connect");
    // The largest length allowed, then far more than it, never a message.
    let mut written = 4usize;
    let mut cut_off = None;
    stream
        .write_all(&(wire::MAX_FRAME as u32).to_le_bytes())
        .expect("write the header");
    let chunk = vec![0xa5u8; 64 * 1024];
    let total = 50 * 1024 * 1024;
    while written < total {
        match stream.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => {
                cut_off = Some(e);
                break;
            }
        }
    }
    let cut_off = cut_off.unwrap_or_else(|| {
        panic!(
            "the supervisor read all 50 MB of a frame that never ends\n{}",
            sup.logs()
        )
    });
    assert!(
        matches!(
            cut_off.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "the client is cut off, not stalled: {cut_off} after {written} bytes"
    );
    let rss_after = vm_kib(sup.pid(), "VmRSS").expect("VmRSS");
    let hwm_after = vm_kib(sup.pid(), "VmHWM").expect("VmHWM");
    eprintln!(
        "50 MB attack: cut off after {written} bytes ({cut_off}); supervisor VmRSS {rss_before} -> {rss_after} KiB, VmHWM {hwm_before} -> {hwm_after} KiB"
    );
    let slack = 4 * 1024;
    assert!(
        rss_after <= rss_before + slack,
        "VmRSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(
        hwm_after <= hwm_before + slack,
        "the peak (VmHWM) grew from {hwm_before} to {hwm_after} KiB"
    );
    serving.assert_unchanged(&sup, "50 MB without a frame end");
}

#[test]
fn frames_cut_off_in_the_middle_are_refused() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    // A body announced as 20 bytes, 5 sent, then the writing half closed.
    let mut cut = 20u32.to_le_bytes().to_vec();
    cut.extend_from_slice(&[1, 0, 2, 9, 9]);
    let reason = refused(&serving.socket, &cut, "a cut body").expect("a refusal");
    assert!(reason.contains("reading a frame of 20 bytes"), "{reason}");
    // A header cut after two bytes.
    let reason = refused(&serving.socket, &[3, 0], "a cut header").expect("a refusal");
    assert!(reason.contains("reading the frame header"), "{reason}");
    // A frame of length zero, and one that holds only half a version.
    let reason = refused(&serving.socket, &wire::frame(&[]), "an empty frame").expect("refusal");
    assert!(reason.contains("no version"), "{reason}");
    let reason = refused(&serving.socket, &wire::frame(&[1]), "half a version").expect("refusal");
    assert!(reason.contains("no version"), "{reason}");
    // Half a valid Reload request, then the connection dropped entirely.
    let reload = wire::reload_request(b"/bin/true", Some(&[b"true"]), &[]);
    {
        let mut stream = raw::connect(&serving.socket).expect("connect");
        stream
            .write_all(&reload[..reload.len() / 2])
            .expect("write");
    }
    serving.assert_unchanged(&sup, "frames cut off");
    assert_eq!(sup.status()["failures"], 0, "nothing was reloaded");
}

#[test]
fn another_protocol_version_is_refused_naming_both() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    for version in [0u16, littleboss::PROTOCOL + 1, 0xffff] {
        // Stop, in a version the supervisor does not speak.
        let frame = wire::frame(&wire::message(version, &[1]));
        let response = raw::ask(&serving.socket, &frame).expect("an answer");
        let expected = format!(
            "peer speaks littleboss protocol {version}, this binary speaks 1-{}",
            littleboss::PROTOCOL
        );
        assert_eq!(
            response.failed(),
            Some(expected.as_str()),
            "version {version}"
        );
    }
    serving.assert_unchanged(&sup, "other protocol versions");
}

#[test]
fn an_unknown_command_is_refused() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    for variant in [3u8, 9, 0x7f] {
        let frame = wire::frame(&wire::message(wire::VERSION, &[variant]));
        let response = raw::ask(&serving.socket, &frame).expect("an answer");
        let reason = response
            .failed()
            .unwrap_or_else(|| panic!("variant {variant}: {response:?}"));
        assert!(reason.contains("malformed message"), "{reason}");
    }
    // A known command with bytes after it.
    let frame = wire::frame(&wire::message(wire::VERSION, &[1, 0]));
    let response = raw::ask(&serving.socket, &frame).expect("an answer");
    assert!(
        response
            .failed()
            .is_some_and(|r| r.contains("1 bytes after the message")),
        "{response:?}"
    );
    serving.assert_unchanged(&sup, "unknown commands");
}

#[test]
fn go_littleboss_json_is_refused() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    for text in [
        "{\"Type\":\"stop\"}\n",
        "{\"Type\":\"reload\",\"Path\":\"/bin/sh\"}\n",
        "{}",
    ] {
        let reason = refused(&serving.socket, text.as_bytes(), text)
            .unwrap_or_else(|| panic!("{text}: closed without a refusal"));
        assert!(
            reason.contains("bytes; at most 65536") || reason.contains("frame"),
            "{text}: {reason}"
        );
    }
    serving.assert_unchanged(&sup, "Go littleboss JSON");
}

/// One read of a byte, again if a signal to this test process interrupts it.
fn read_one(stream: &mut impl Read) -> std::io::Result<usize> {
    let mut byte = [0u8; 1];
    again_if_interrupted(|| stream.read(&mut byte))
}

#[test]
fn a_silent_client_is_dropped_after_five_seconds_and_blocks_nobody() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    let mut silent = raw::connect(&serving.socket).expect("connect");
    let connected = Instant::now();
    // Others are served meanwhile.
    let t0 = Instant::now();
    raw::status(&serving.socket);
    eprintln!("status beside a silent client: {:?}", t0.elapsed());
    serving.assert_unchanged(&sup, "a silent client connected");
    let read = read_one(&mut silent);
    let waited = connected.elapsed();
    eprintln!("the silent client was dropped after {waited:?}: {read:?}");
    assert!(
        matches!(read, Ok(0)),
        "the silent client is closed without an answer: {read:?}"
    );
    assert!(
        waited >= Duration::from_millis(4500),
        "dropped too early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(15), "dropped late: {waited:?}");
    serving.assert_unchanged(&sup, "a silent client");
}

#[test]
fn a_hundred_silent_clients_do_not_delay_status() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    let silent: Vec<_> = (0..100)
        .map(|i| raw::connect(&serving.socket).unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect();
    let t0 = Instant::now();
    let status = raw::status(&serving.socket);
    let took = t0.elapsed();
    eprintln!("status with 100 silent clients connected: {took:?}");
    assert_eq!(status.child_pid, Some(serving.child));
    assert!(
        took < Duration::from_secs(3),
        "status took {took:?} with 100 silent clients"
    );
    serving.assert_unchanged(&sup, "100 silent clients connected");
    for (i, mut client) in silent.into_iter().enumerate() {
        let read = read_one(&mut client);
        assert!(matches!(read, Ok(0)), "client {i} is dropped: {read:?}");
    }
    serving.assert_unchanged(&sup, "100 silent clients");
}

#[test]
fn a_hand_encoded_status_request_follows_protocol_md() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    let frame = wire::status_request();
    assert_eq!(
        frame,
        [3, 0, 0, 0, 1, 0, 0],
        "[len u32 LE][version u16 LE][variant 0]"
    );
    let status = raw::status(&serving.socket);
    let json = sup.status();
    assert_eq!(status.name, NAME);
    // Asked in version 1, answered in its layout: `protocol` is the supervisor's
    // newest version.
    assert_eq!(status.protocol, littleboss::PROTOCOL);
    assert_eq!(status.supervisor_pid, sup.pid());
    assert_eq!(status.child_pid, Some(serving.child));
    assert_eq!(status.state, "running");
    assert_eq!(status.reloads, 0);
    assert_eq!(status.failures, 0);
    assert_eq!(status.restarts, 0);
    assert_eq!(status.previous_path, None);
    assert_eq!(
        status.listeners.get("http").map(String::as_str),
        Some(format!("tcp:{}", serving.addr).as_str())
    );
    assert_eq!(
        status.listeners.get("spare").map(String::as_str),
        Some("off")
    );
    // The same facts as status-json, field by field.
    assert_eq!(json["supervisor_started"], status.supervisor_started);
    assert_eq!(json["child_started"], status.child_started.clone().unwrap());
    assert_eq!(json["child_path"], status.child_path.clone().unwrap());
    let args: Vec<&str> = json["child_args"]
        .as_array()
        .expect("child_args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args, status.child_args);
    serving.assert_unchanged(&sup, "a hand-encoded status");
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

#[test]
#[ignore = "needs root"]
fn a_client_of_another_user_is_refused() {
    require_root("run a client as uid 65534");
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    // Open the way to the socket for everybody, after the supervisor checked it.
    chmod(env.path(), 0o755);
    chmod(env.dir(), 0o755);
    chmod(&serving.socket, 0o666);
    // The client must be executable by uid 65534 wherever the tree was checked out.
    let client_bin = runnable_by_nobody(bin!("lb-raw-client"), env.path());
    for request in ["stop", "status"] {
        let mut client = Command::new(&client_bin);
        client
            .arg(&serving.socket)
            .arg(request)
            .uid(65534)
            .gid(65534);
        let outcome = run_for(client, COMMAND_TIMEOUT);
        assert_eq!(outcome.code(), Some(0), "{outcome}");
        assert!(
            outcome
                .stdout
                .starts_with("failed: permission denied: uid 65534"),
            "{request} as uid 65534: {outcome}"
        );
        assert!(
            outcome
                .stdout
                .contains("is not the supervisor's user (uid 0)"),
            "{outcome}"
        );
    }
    let log = sup.wait_for_log("refused a control connection");
    assert!(log.contains("permission denied: uid 65534"), "{log}");
    assert!(sup.try_exit().is_none(), "the supervisor did not stop");
    chmod(env.dir(), 0o700);
    chmod(env.path(), 0o700);
    serving.assert_unchanged(&sup, "a client of uid 65534");
}

/// Runs `lb-http ARGS` in `env` and checks that it refused the control directory:
/// exit 1, a message that contains each of `needles`, and no socket.
fn assert_dir_refused(env: &Env, args: &[&str], needles: &[&str]) {
    let outcome = env.run(bin!("lb-http"), args);
    assert_eq!(outcome.code(), Some(1), "{args:?}: {outcome}");
    for needle in needles {
        assert!(
            outcome.stderr.contains(needle),
            "{args:?} lacks {needle:?}: {outcome}"
        );
    }
    assert!(!env.socket(NAME).exists(), "{args:?} made a socket");
    assert!(!env.lock(NAME).exists(), "{args:?} made a lock file");
}

#[test]
fn a_world_writable_control_dir_is_refused() {
    let env = Env::new();
    std::fs::create_dir(env.dir()).expect("mkdir");
    chmod(env.dir(), 0o777);
    let fix = format!("fix: chmod 700 {}", env.dir().display());
    let needles = ["has mode 0777", fix.as_str()];
    assert_dir_refused(&env, &["--littleboss=start"], &needles);
    assert_dir_refused(&env, &["--littleboss=status"], &needles);
    assert_dir_refused(&env, &["--littleboss=stop"], &needles);
    chmod(env.dir(), 0o770);
    assert_dir_refused(&env, &["--littleboss=start"], &["has mode 0770"]);
}

#[test]
fn a_symlinked_control_dir_is_refused() {
    let env = Env::new();
    let real = env.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    chmod(&real, 0o700);
    std::os::unix::fs::symlink(&real, env.dir()).expect("symlink");
    let needles = [
        "is a symlink; refusing it",
        "use a real directory, mode 0700",
    ];
    assert_dir_refused(&env, &["--littleboss=start"], &needles);
    assert_dir_refused(&env, &["--littleboss=status"], &needles);
    assert_eq!(
        std::fs::read_dir(&real).expect("read the target").count(),
        0,
        "nothing was created through the symlink"
    );
}

#[test]
#[ignore = "needs root"]
fn a_control_dir_of_another_user_is_refused() {
    require_root("chown the directory");
    let env = Env::new();
    std::fs::create_dir(env.dir()).expect("mkdir");
    chmod(env.dir(), 0o700);
    std::os::unix::fs::chown(env.dir(), Some(65534), Some(65534)).expect("chown");
    let needles = [
        "is owned by uid 65534, not by this user (uid 0)",
        "LITTLEBOSS_DIR=$HOME/.littleboss",
    ];
    assert_dir_refused(&env, &["--littleboss=start"], &needles);
    assert_dir_refused(&env, &["--littleboss=status"], &needles);
}

#[test]
fn more_silent_clients_than_slots_leave_no_trace() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    let fds_before = fd_count(sup.pid()).expect("the supervisor's fds");
    // 300 silent clients, more than the 256 the supervisor serves at once.
    let silent: Vec<_> = (0..300)
        .map(|i| raw::connect(&serving.socket).unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect();
    let during = raw::ask(&serving.socket, &wire::status_request());
    eprintln!(
        "status with 300 silent clients connected: {}",
        match &during {
            Ok(Response::Status(_)) => "answered".to_string(),
            other => format!("not answered ({other:?}): the supervisor serves 256 at once"),
        }
    );
    assert!(get(serving.addr).is_ok(), "the child serves meanwhile");
    drop(silent);
    let t0 = Instant::now();
    let status = sup.wait_for(
        "status once the silent clients are gone",
        || match raw::ask(&serving.socket, &wire::status_request()) {
            Ok(Response::Status(status)) => Some(status),
            _ => None,
        },
    );
    eprintln!(
        "status answered {:?} after the clients closed",
        t0.elapsed()
    );
    assert_eq!(status.child_pid, Some(serving.child));
    serving.assert_unchanged(&sup, "300 silent clients");
    let fds_after = sup.wait_for("the supervisor's fds to settle", || {
        let now = fd_count(sup.pid())?;
        (now == fds_before).then_some(now)
    });
    assert_eq!(fds_after, fds_before);
}

#[test]
fn fds_sent_to_the_control_socket_are_not_kept() {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::mem::MaybeUninit;
    use std::os::fd::AsFd;

    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    let fds_before = fd_count(sup.pid()).expect("the supervisor's fds");
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    for round in 0..20 {
        let mut stream = raw::connect(&serving.socket).expect("connect");
        let fds = [file.as_fd(); 64];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(64))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        let frame = wire::status_request();
        let sent = rustix::net::sendmsg(
            &stream,
            &[std::io::IoSlice::new(&frame)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .expect("sendmsg");
        assert_eq!(sent, frame.len());
        let answer = raw::read_response(&mut stream).expect("an answer");
        assert!(
            matches!(answer, Some(Response::Status(_))),
            "round {round}: {answer:?}"
        );
    }
    let fds_after = sup.wait_for("the supervisor's fds to settle", || {
        let now = fd_count(sup.pid())?;
        (now == fds_before).then_some(now)
    });
    assert_eq!(fds_after, fds_before, "1280 fds were sent");
    serving.assert_unchanged(&sup, "fds sent to the control socket");
}

/// The answer a connection beyond the cap gets.
const BUSY: &str = "the supervisor is busy: 256 control connections are open; try again";

#[test]
fn three_hundred_idle_clients_cannot_make_a_stop_fail() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let serving = Serving::of(&sup, env.socket(NAME));
    let mut idle: Vec<_> = (0..300)
        .map(|i| raw::connect(&serving.socket).unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect();
    // Beyond the cap, a status is answered `busy`, by a raw client and by the command.
    let during = raw::ask(&serving.socket, &wire::status_request());
    match &during {
        Ok(Response::Failed { reason }) => assert_eq!(reason, BUSY),
        other => panic!("status beyond the cap: {other:?}\n{}", sup.logs()),
    }
    let status = sup.run(&["--littleboss=status"]);
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(
        status.stderr.contains(&format!("{NAME}: {BUSY}")),
        "{status}"
    );
    // An idle client beyond the cap is told too, not closed silently.
    let last = idle.last_mut().expect("a client");
    match raw::read_response(last) {
        Ok(Some(Response::Failed { reason })) => assert_eq!(reason, BUSY),
        other => panic!("an idle client beyond the cap: {other:?}"),
    }
    let refused = sup.wait_for_log("refused a control connection: the supervisor is busy");
    assert!(refused.contains("so far)"), "{refused}");
    // The slot kept for `stop` serves it, with every other slot taken.
    let t0 = Instant::now();
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}\n{}", sup.logs());
    assert!(stop.stdout.contains("stopped lbhttp exit code 0"), "{stop}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(sup.wait_code(), 0);
    drop(idle);
}

/// `lb-http ARGS` with `LITTLEBOSS_DIR=dir` (as spelled), in `env`.
fn run_in_dir(env: &Env, dir: &str, args: &[&str]) -> littleboss_tests::Outcome {
    let mut command = env.command(bin!("lb-http"));
    command.env("LITTLEBOSS_DIR", dir).args(args);
    run_for(command, COMMAND_TIMEOUT)
}

#[test]
fn a_symlinked_control_dir_is_refused_however_it_is_spelled() {
    let env = Env::new();
    let real = env.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    chmod(&real, 0o700);
    std::os::unix::fs::symlink(&real, env.dir()).expect("symlink");
    let link = env.dir().display().to_string();
    for spelled in [
        format!("{link}/"),
        format!("{link}/."),
        format!("{link}/./"),
    ] {
        for mode in ["--littleboss=start", "--littleboss=status"] {
            let outcome = run_in_dir(&env, &spelled, &[mode]);
            assert_eq!(outcome.code(), Some(1), "{spelled} {mode}: {outcome}");
            assert!(
                outcome.stderr.contains("is a symlink; refusing it"),
                "{spelled} {mode}: {outcome}"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(&real).expect("read the target").count(),
        0,
        "nothing was created through the symlink"
    );
}

#[test]
fn a_control_dir_under_a_parent_others_can_write_is_refused() {
    let env = Env::new();
    let open = env.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    let dir = open.join("run");
    let named = format!("its parent {} has mode 0777", open.display());
    for mode in ["--littleboss=start", "--littleboss=status"] {
        if mode == "--littleboss=status" {
            // A directory that exists already is checked by the client too.
            std::fs::create_dir_all(&dir).expect("mkdir");
            chmod(&dir, 0o700);
        }
        let outcome = run_in_dir(&env, &dir.display().to_string(), &[mode]);
        assert_eq!(outcome.code(), Some(1), "{mode}: {outcome}");
        assert!(outcome.stderr.contains(&named), "{mode}: {outcome}");
    }
    assert!(!dir.join(format!("{NAME}.sock")).exists());
}

#[test]
#[ignore = "needs root"]
fn a_control_dir_under_a_parent_of_another_user_is_refused() {
    require_root("chown a parent directory");
    let env = Env::new();
    let theirs = env.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    chmod(&theirs, 0o755);
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
    let dir = theirs.join("run");
    let outcome = run_in_dir(&env, &dir.display().to_string(), &["--littleboss=start"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    let named = format!(
        "its parent {} is owned by uid 65534, neither this user (uid 0) nor root",
        theirs.display()
    );
    assert!(outcome.stderr.contains(&named), "{outcome}");
    assert!(!dir.exists(), "nothing was created under it");
}

#[test]
#[ignore = "needs root"]
fn a_control_dir_under_a_sticky_parent_of_root_is_accepted() {
    require_root("own a sticky directory as root");
    let env = Env::new();
    // The control directory's parent is root's, writable by all and sticky, as /tmp.
    chmod(env.path(), 0o1777);
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0);
    chmod(env.path(), 0o700);
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_not_deleted() {
    let env = Env::new();
    std::fs::create_dir(env.dir()).expect("mkdir");
    chmod(env.dir(), 0o700);
    let path = env.socket(NAME);
    std::fs::write(&path, "keep me\n").expect("write");
    let outcome = env.run(bin!("lb-http"), &["--littleboss=start"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    let message = format!(
        "{} exists and is a regular file, not a control socket; refusing to delete it",
        path.display()
    );
    assert!(outcome.stderr.contains(&message), "{outcome}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("still there"),
        "keep me\n"
    );
}

/// A supervisor with no fd to spare still answers a control connection: it keeps one fd
/// in reserve, gives it up to accept, and takes it back once it can.
#[test]
fn a_supervisor_out_of_fds_still_answers_status_and_stop() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    sup.wait_running();
    // The lowest fd number it does not hold: a limit there leaves it no fd to open.
    let open: std::collections::BTreeSet<u64> =
        std::fs::read_dir(format!("/proc/{}/fd", sup.pid()))
            .expect("its fds")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
    let lowest_free = (0..).find(|n| !open.contains(n)).expect("a free number");
    let nofile = rustix::process::Resource::Nofile;
    let limit = rustix::process::Rlimit {
        current: Some(lowest_free),
        maximum: rustix::process::getrlimit(nofile).maximum,
    };
    let pid = rustix::process::Pid::from_raw(sup.pid() as i32).expect("a pid");
    rustix::process::prlimit(Some(pid), nofile, limit).expect("its fd limit lowered");
    let status = sup.status();
    assert_eq!(status["state"], "running", "{status}\n{}", sup.logs());
    let stopped = sup.run(&["--littleboss=stop"]);
    assert_eq!(stopped.code(), Some(0), "{stopped}\n{}", sup.logs());
}
