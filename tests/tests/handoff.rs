//! Idle keep-alive connections that move to the new process at a reload, with real
//! processes and pooled clients on loopback: a pooled client checks, as browsers and
//! HTTP libraries do, that its connection is still open before it reuses it, and
//! counts a connection the server closed, a `Connection: close`, and a request that
//! found no answer.
//!
//! The servers are `lb-adopt` (the helper, lameduck 30 s: an old process that exits
//! within the test's deadline did so because its connections had moved, not because
//! its lameduck ended), `lb-serve` (over TCP, and over a unix socket), the `http`,
//! `axum` and `handoff` examples.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio_rustls::rustls;

use littleboss_tests::attack_support::fd_count;
use littleboss_tests::http_support::Certs;
use littleboss_tests::pool_support::pooled;
use littleboss_tests::release_support::{TEST_PROTOCOLS, start_with_env};
use littleboss_tests::{Env, Supervisor, bin, example, wait_gone};

/// What one request on a pooled connection got.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    pid: u32,
    /// The response said `Connection: close`.
    close: bool,
}

/// One pooled keep-alive connection.
struct Pooled {
    addr: SocketAddr,
    stream: TcpStream,
    /// Times the server had closed it when it was next used (it was opened again).
    closed: usize,
}

impl Pooled {
    fn open(addr: SocketAddr) -> Pooled {
        Pooled {
            addr,
            stream: connect(addr),
            closed: 0,
        }
    }

    /// Whether the connection is still open: no end of file and no error waiting on it
    /// (a non-blocking peek), as a pooled client looks before it reuses one.
    fn is_open(&self) -> bool {
        is_open(self.stream.as_fd())
    }

    /// `GET /`, on the pooled connection if it is still open, else on a new one; the
    /// answer, or why there was none (a failed request).
    fn get(&mut self) -> Result<Answer, String> {
        if !self.is_open() {
            self.closed += 1;
            self.stream = connect(self.addr);
        }
        let answer = request(&mut self.stream)?;
        if answer.close {
            self.stream = connect(self.addr);
        }
        Ok(answer)
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    stream
}

/// Whether the connection `fd` is still open: no end of file and no error waiting on it
/// (a non-blocking peek), as a pooled client looks before it reuses one.
fn is_open(fd: BorrowedFd<'_>) -> bool {
    let mut byte = [0u8; 1];
    match rustix::net::recv(
        fd,
        &mut byte,
        rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
    ) {
        Err(rustix::io::Errno::AGAIN) => true,
        // End of file, an error, or bytes nobody asked for.
        _ => false,
    }
}

/// Sends `GET /` on `stream` and reads the whole response.
fn request(stream: &mut (impl Read + Write)) -> Result<Answer, String> {
    send_part(stream, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")?;
    read_answer(stream)
}

/// Reloads `sup` to `bin` without waiting for anything.
fn start_reload(env: &Env, sup: &Supervisor<'_>, bin: &std::path::Path) {
    let outcome = env.run(bin, &["--littleboss=reload"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
}

fn send_part(stream: &mut impl Write, bytes: &[u8]) -> Result<(), String> {
    stream
        .write_all(bytes)
        .map_err(|e| format!("sending the request: {e}"))
}

/// Reads one response (its head, then `content-length` bytes of body).
fn read_answer(stream: &mut impl Read) -> Result<Answer, String> {
    read_answer_after(stream, &mut Vec::new())
}

/// Reads one response, starting with the bytes in `read` that came before (of
/// pipelined responses); what came after it stays in `read`.
fn read_answer_after(stream: &mut impl Read, read: &mut Vec<u8>) -> Result<Answer, String> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("closed before an answer ({} bytes)", read.len())),
            Ok(n) => read.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&read[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200 ") {
        return Err(format!("answered {head:?}"));
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    while read.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) => return Err("closed in the middle of the body".to_string()),
            Ok(n) => read.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the body: {e}")),
        }
    }
    let body = String::from_utf8_lossy(&read[head_end..head_end + length]).into_owned();
    read.drain(..head_end + length);
    let pid = body
        .rsplit_once("pid ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no pid in {body:?}"))?;
    Ok(Answer {
        pid,
        close: head.contains("connection: close"),
    })
}

/// Reloads `sup` to `bin ARGS` and waits until the old child has exited; the new
/// child's pid.
fn reload(env: &Env, sup: &Supervisor<'_>, bin: &std::path::Path, args: &[&str]) -> u32 {
    let old = sup.child_pid();
    let mut all = vec!["--littleboss=reload"];
    if !args.is_empty() {
        all.push("--");
        all.extend_from_slice(args);
    }
    let outcome = env.run(bin, &all);
    assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
    wait_gone(old, "the old child");
    let new = sup.child_pid();
    assert_ne!(new, old);
    new
}

/// Every connection of `pool` is still open and answered by `pid`, without a close.
#[track_caller]
fn all_moved_to(pool: &mut [Pooled], pid: u32, sup: &Supervisor<'_>) {
    for (i, conn) in pool.iter_mut().enumerate() {
        assert!(conn.is_open(), "connection {i} was closed\n{}", sup.logs());
        let answer = conn
            .get()
            .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", sup.logs()));
        assert_eq!(answer, Answer { pid, close: false }, "connection {i}");
    }
}

/// Every connection of `pool` gets an answer from `pid`, on its own connection or,
/// if the server had closed that one while it was idle, on a new one: nothing fails.
#[track_caller]
fn none_lost(pool: &mut [Pooled], pid: u32, sup: &Supervisor<'_>) {
    for (i, conn) in pool.iter_mut().enumerate() {
        let answer = conn
            .get()
            .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", sup.logs()));
        assert_eq!(answer.pid, pid, "connection {i}");
    }
}

/// Upgrades `sup` to `bin`, waits until the old child has exited, and checks that
/// every connection of `pool` moved to the new one.
#[track_caller]
fn upgrade_moving(env: &Env, sup: &Supervisor<'_>, bin: &std::path::Path, pool: &mut [Pooled]) {
    let old = sup.child_pid();
    let outcome = env.run(bin, &["--littleboss=upgrade"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
    wait_gone(old, "the old child");
    all_moved_to(pool, sup.child_pid(), sup);
}

/// The supervisor's log says `times` times that an old child had moved `n`
/// connections.
#[track_caller]
fn assert_moved(log: &str, n: usize, times: usize) {
    let line = format!("; {n} connections moved to the new child");
    assert_eq!(log.matches(&line).count(), times, "{log}");
}

fn pool_of(sup: &Supervisor<'_>, n: usize) -> Vec<Pooled> {
    let addr = sup.addr("http");
    let mut pool: Vec<Pooled> = (0..n).map(|_| Pooled::open(addr)).collect();
    let first = sup.child_pid();
    for conn in &mut pool {
        assert_eq!(conn.get().expect("an answer").pid, first);
    }
    pool
}

#[test]
fn idle_unix_socket_connections_move_to_the_new_process_with_no_close() {
    let env = Env::new();
    let path = env.path().join("serve.sock");
    let flag = format!("--sock={}", path.display());
    let bin = bin!("lb-serve");
    let sup = env.start(bin, &["--http=127.0.0.1:0", flag.as_str(), "--", "--unix"]);
    let first = sup.child_pid();
    let mut pool: Vec<UnixStream> = (0..20)
        .map(|_| {
            let stream = UnixStream::connect(&path).expect("the server accepts");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("a read timeout");
            stream
        })
        .collect();
    for conn in &mut pool {
        let answer = request(conn).unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
        assert_eq!(
            answer,
            Answer {
                pid: first,
                close: false
            }
        );
    }
    for _ in 0..3 {
        let new = reload(&env, &sup, bin, &[]);
        for (i, conn) in pool.iter_mut().enumerate() {
            assert!(
                is_open(conn.as_fd()),
                "connection {i} was closed\n{}",
                sup.logs()
            );
            let answer = request(conn).unwrap_or_else(|e| panic!("{i}: {e}\n{}", sup.logs()));
            assert_eq!(
                answer,
                Answer {
                    pid: new,
                    close: false
                },
                "connection {i}"
            );
        }
    }
    assert_moved(&sup.logs(), 20, 3);
}

#[test]
fn idle_connections_move_to_the_new_process_with_no_close() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let copy = env.copy_binary(bin, "lb-adopt-2");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let mut pool = pool_of(&sup, 40);
    for i in 0..6 {
        // The old child's lameduck is 30 s: it is gone within the deadline because
        // every connection it had moved.
        let new = reload(&env, &sup, if i % 2 == 0 { &copy } else { bin }, &[]);
        all_moved_to(&mut pool, new, &sup);
    }
    assert!(pool.iter().all(|c| c.closed == 0));
    let log = sup.logs();
    assert!(!log.contains("still open"), "{log}");
    assert!(
        log.contains("; 40 connections moved to the new child"),
        "{log}"
    );
}

/// An upgrade moves idle connections as a reload does: the supervisor re-executes only
/// once the old child has handed its connections over (this image, which knows who
/// adopts them, relays them meanwhile), so none is closed.
/// An upgrade moves connections as a reload does: 1,000 idle pooled connections, and
/// at each of 10 upgrades requests half sent (the first on a fresh connection, or a
/// later one), a slow request in flight and two pipelined requests sent in one write,
/// none closed and none failed.
#[test]
fn connections_and_requests_under_way_move_through_ten_upgrades_with_no_close() {
    littleboss_tests::raise_fd_limit();
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let copy = env.copy_binary(bin, "lb-adopt-2");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let addr = sup.addr("http");
    let mut pool = pool_of(&sup, 1_000);
    const HALF: &[u8] = b"GET / HTTP/1.1\r\nHo";
    const REST: &[u8] = b"st: test\r\n\r\n";
    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    for i in 0..10 {
        let old = sup.child_pid();
        // Under way as the upgrade begins.
        let before = littleboss_tests::socket_inodes(old).len();
        let mut fresh = Pooled::open(addr);
        send_part(&mut fresh.stream, HALF).expect("sent");
        sup.wait_for("the old child to accept the fresh connection", || {
            (littleboss_tests::socket_inodes(old).len() > before).then_some(())
        });
        for conn in &mut pool[..5] {
            send_part(&mut conn.stream, HALF).expect("sent");
        }
        send_part(
            &mut pool[5].stream,
            b"GET /slow/400 HTTP/1.1\r\nHost: test\r\n\r\n",
        )
        .expect("sent");
        sup.wait_for_log(&format!("lb-adopt: pid {old} slow 400"));
        for conn in &mut pool[6..8] {
            send_part(&mut conn.stream, &[GET, GET].concat()).expect("sent");
        }
        let to = if i % 2 == 0 { &copy } else { bin };
        let outcome = env.run(to, &["--littleboss=upgrade"]);
        assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
        let slow =
            read_answer(&mut pool[5].stream).unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
        assert_eq!(
            slow,
            Answer {
                pid: old,
                close: false
            },
            "the slow request"
        );
        for conn in &mut pool[6..8] {
            let mut read = Vec::new();
            for _ in 0..2 {
                let answer = read_answer_after(&mut conn.stream, &mut read)
                    .unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
                assert!(!answer.close, "a pipelined request was told to close");
            }
        }
        // The old child's lameduck is 30 s: it is gone within the deadline because
        // every connection it had moved.
        wait_gone(old, "the old child");
        let new = sup.child_pid();
        // The rest of each half-sent request, answered by the new process.
        for conn in std::iter::once(&mut fresh).chain(&mut pool[..5]) {
            send_part(&mut conn.stream, REST).expect("sent");
            let answer =
                read_answer(&mut conn.stream).unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
            assert_eq!(
                answer,
                Answer {
                    pid: new,
                    close: false
                },
                "a half-sent request"
            );
        }
        all_moved_to(&mut pool, new, &sup);
    }
    assert!(pool.iter().all(|c| c.closed == 0));
    let log = sup.logs();
    assert_eq!(log.matches("upgraded: supervisor pid").count(), 10, "{log}");
    assert_eq!(
        log.matches("(upgrade state version 5)").count(),
        10,
        "{log}"
    );
    // The pool and the fresh connection, each time.
    assert_moved(&log, 1001, 10);
}

/// A binary that reads only upgrade state version 1 (as releases up to 0.2 do) is
/// handed version 1, which carries nothing of the connections moving: the supervisor
/// re-executes once the old child has handed everything over and exited, and no
/// connection closes either way.
#[test]
fn an_upgrade_to_a_binary_that_reads_only_state_version_1_moves_connections_too() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let copy = env.copy_binary(bin, "lb-adopt-2");
    let sup = env.start_with(
        bin,
        &["--http=127.0.0.1:0"],
        &[("LITTLEBOSS_TEST_STATE_VERSION", "1")],
    );
    sup.wait_running();
    let mut pool = pool_of(&sup, 300);
    for to in [&copy, bin] {
        upgrade_moving(&env, &sup, to, &mut pool);
    }
    assert!(pool.iter().all(|c| c.closed == 0));
    let log = sup.logs();
    assert_eq!(log.matches("(upgrade state version 1)").count(), 2, "{log}");
    assert_moved(&log, 300, 2);
}

/// More idle connections than may be on their way at once (1,024) all move in one
/// reload: past the cap they wait their turn in the supervisor instead of going back
/// to be closed.
#[test]
fn three_thousand_idle_connections_move_in_one_reload_and_one_upgrade_with_no_close() {
    littleboss_tests::raise_fd_limit();
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let copy = env.copy_binary(bin, "lb-adopt-2");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let mut pool = pool_of(&sup, 3_000);
    let new = reload(&env, &sup, &copy, &[]);
    all_moved_to(&mut pool, new, &sup);
    // An upgrade with more held in the supervisor than may be on their way: the old
    // child's hand-overs wait in its channel while those held go on, then the next
    // image takes the rest.
    upgrade_moving(&env, &sup, bin, &mut pool);
    assert!(pool.iter().all(|c| c.closed == 0));
    let log = sup.logs();
    assert_moved(&log, 3000, 2);
}

/// A new process short of fds is sent no more connections than it has room for, less
/// some for its own use: the supervisor measures its room as it forwards them, and
/// gives the rest back to the old process, which winds them down as it does those
/// nobody adopts. The new process still accepts new connections (sent all 300, it had
/// no fd left to accept one), nothing is killed, and no request fails.
#[test]
fn a_new_process_short_of_fds_is_sent_what_it_has_room_for_and_nothing_fails() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let copy = env.copy_binary(bin, "lb-adopt-2");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let mut pool = pool_of(&sup, 300);
    let new = reload(&env, &sup, &copy, &["--nofile", "150"]);
    // It kept fds for its own use: it still accepts a new connection.
    let mut fresh = Pooled::open(sup.addr("http"));
    let answer = fresh
        .get()
        .unwrap_or_else(|e| panic!("a new connection: {e}\n{}", sup.logs()));
    assert_eq!(answer.pid, new);
    // Room again for the connections that come back to it after their wind-down.
    let nofile = rustix::process::Resource::Nofile;
    let limit = rustix::process::getrlimit(nofile);
    let pid = rustix::process::Pid::from_raw(new as i32).expect("a pid");
    rustix::process::prlimit(Some(pid), nofile, limit).expect("the new child's limit");
    none_lost(&mut pool, new, &sup);
    let moved = pool.iter().filter(|c| c.closed == 0).count();
    assert!(
        (50..150).contains(&moved),
        "{moved} of 300 moved to a process with room for about 100\n{}",
        sup.logs()
    );
    let log = sup.logs();
    assert!(!log.contains("malformed"), "{log}");
    assert!(!log.contains("was killed"), "{log}");
    assert_eq!(sup.status()["failures"], 0);
}

/// A supervisor out of fds while connections move takes what it can, gives back what
/// it cannot (its fd list was cut short: the kernel could not give it more fds), and
/// blames nobody: no child is killed, the old child winds the connections it got back
/// down as it does those nobody adopts, and no request fails.
#[test]
fn a_supervisor_short_of_fds_gives_back_what_it_cannot_take_and_kills_nobody() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let copy = env.copy_binary(bin, "lb-adopt-2");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let mut pool = pool_of(&sup, 300);
    // Room for the reload itself, not for 300 connections at once.
    let used = fd_count(sup.pid()).expect("the supervisor's fds") as u64;
    let pid = |pid: u32| rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    let nofile = rustix::process::Resource::Nofile;
    let hard = rustix::process::getrlimit(nofile).maximum;
    let limit = rustix::process::Rlimit {
        current: Some(used + 24),
        maximum: hard,
    };
    let before = rustix::process::prlimit(Some(pid(sup.pid())), nofile, limit)
        .expect("the supervisor's fd limit lowered");
    let new = reload(&env, &sup, &copy, &[]);
    // The new child inherited the low limit (and took what it could); the old one's
    // returned connections reconnect to it, so it gets its room back.
    rustix::process::prlimit(Some(pid(new)), nofile, before).expect("the new child's limit");
    none_lost(&mut pool, new, &sup);
    let log = sup.logs();
    assert!(log.contains("the supervisor is out of fds"), "{log}");
    assert!(!log.contains("malformed"), "{log}");
    assert!(!log.contains("was killed"), "{log}");
    let status = sup.status();
    assert_eq!(status["failures"], 0, "{status}");
    assert_eq!(status["state"], "running", "{status}");
}

#[test]
fn pooled_clients_that_send_at_random_moments_through_reloads_see_no_close() {
    // Requests at any moment, reloads meanwhile: the race that closing always has.
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let copy = env.copy_binary(bin, "lb-adopt-2");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let pool = pooled(
        sup.addr("http"),
        100,
        Duration::from_millis(300),
        Arc::clone(&stop),
    );
    let mut pids = vec![sup.child_pid()];
    let served = |n: u64| {
        // Each child serves a share of the load before it is replaced.
        let before = pool.answered();
        sup.wait_for("the pooled clients to be answered", || {
            (pool.answered() >= before + n).then_some(())
        });
    };
    for i in 0..8 {
        served(150);
        pids.push(reload(
            &env,
            &sup,
            if i % 2 == 0 { &copy } else { bin },
            &[],
        ));
    }
    served(150);
    let report = pool.finish();
    assert_eq!(report.failed, 0, "{:?}\n{}", report.failures, sup.logs());
    assert_eq!(report.closed_by_server, 0, "{report:?}");
    assert_eq!(report.close_answers, 0, "{report:?}");
    assert_eq!(report.opened, 100, "one connection a client: {report:?}");
    assert!(report.ok > 0);
    assert!(
        report.pids.is_subset(&pids.iter().copied().collect()),
        "{report:?}"
    );
}

#[test]
fn a_reload_that_rolls_back_moves_nothing() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let mut pool = pool_of(&sup, 5);
    let old = sup.child_pid();
    // The new process refuses its arguments and exits before it is ready.
    let outcome = env.run(bin, &["--littleboss=reload", "--", "--bogus"]);
    assert_ne!(outcome.code(), Some(0), "{outcome}");
    assert_eq!(sup.child_pid(), old);
    all_moved_to(&mut pool, old, &sup);
    assert!(pool.iter().all(|c| c.closed == 0));
}

#[test]
fn the_http_and_axum_examples_move_pooled_connections() {
    for name in ["http", "axum"] {
        let env = Env::new();
        let bin = example!(name);
        let sup = env.start(&bin, &["--http=127.0.0.1:0"]);
        let mut pool = pool_of(&sup, 20);
        for _ in 0..3 {
            let new = reload(&env, &sup, &bin, &[]);
            all_moved_to(&mut pool, new, &sup);
        }
    }
}

#[test]
fn a_first_request_half_sent_when_its_connection_moves_is_answered_by_the_new_process() {
    // A connection whose first request has only begun: the old process has read it but
    // hyper has not had it yet.
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let before = littleboss_tests::socket_inodes(old).len();
    let mut fresh = Pooled::open(addr);
    send_part(&mut fresh.stream, b"GET / HTTP/1.1\r\nHo").expect("sent");
    sup.wait_for("the old child to accept it", || {
        (littleboss_tests::socket_inodes(old).len() > before).then_some(())
    });
    let new = reload(&env, &sup, bin, &[]);
    send_part(&mut fresh.stream, b"st: test\r\n\r\n").expect("sent");
    let answer = read_answer(&mut fresh.stream).unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
    assert_eq!(
        answer,
        Answer {
            pid: new,
            close: false
        }
    );
}

#[test]
fn a_request_half_sent_when_its_connection_moves_is_answered_by_the_new_process() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let mut pool = pool_of(&sup, 3);
    // The first bytes of a request are read by the old process, which has not parsed a
    // request yet: they move with the connection.
    for conn in &mut pool {
        send_part(&mut conn.stream, b"GET / HTTP/1.1\r\nHo").expect("sent");
    }
    let new = reload(&env, &sup, bin, &[]);
    for conn in &mut pool {
        send_part(&mut conn.stream, b"st: test\r\n\r\n").expect("sent");
        let answer =
            read_answer(&mut conn.stream).unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
        assert_eq!(
            answer,
            Answer {
                pid: new,
                close: false
            }
        );
    }
    all_moved_to(&mut pool, new, &sup);
}

#[test]
fn a_request_in_flight_at_lameduck_is_answered_then_its_connection_moves() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let mut pool = pool_of(&sup, 2);
    let old = sup.child_pid();
    send_part(
        &mut pool[0].stream,
        b"GET /slow/700 HTTP/1.1\r\nHost: test\r\n\r\n",
    )
    .expect("sent");
    sup.wait_for_log(&format!("lb-adopt: pid {old} slow 700"));
    start_reload(&env, &sup, bin);
    // Answered by the old process, and not told to close: the connection moves after.
    let answer = read_answer(&mut pool[0].stream).unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
    assert_eq!(
        answer,
        Answer {
            pid: old,
            close: false
        }
    );
    wait_gone(old, "the old child");
    all_moved_to(&mut pool, sup.child_pid(), &sup);
}

#[test]
fn a_connection_whose_last_request_had_a_body_moves_once_the_body_is_behind_it() {
    // The helper moves a connection only at a body's end, which it finds by counting
    // what hyper read (`Content-Length`, or chunks and trailers): a body the service
    // read (`/read`), or one it left unread and hyper drained (a whole body of a known
    // length that came before the answer). A request on the moved connection is
    // answered by the new process: no byte of a body reached it as a request.
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let mut pool = pool_of(&sup, 4);
    let body = "x".repeat(5000);
    let sized = format!(
        "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let chunked = format!(
        "POST /read HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n{:x};a=b\r\n{body}\r\n3\r\nxyz\r\n0\r\nTrailer: t\r\n\r\n",
        body.len()
    );
    let old = sup.child_pid();
    for (conn, post) in pool.iter_mut().zip([sized.as_str(), chunked.as_str()]) {
        send_part(&mut conn.stream, post.as_bytes()).expect("sent");
        assert_eq!(read_answer(&mut conn.stream).expect("an answer").pid, old);
    }
    // Half a body: the rest is still to come when the answer is given, so hyper
    // closes the connection after it, as it would without littleboss.
    let half = "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\nxxxx";
    send_part(&mut pool[3].stream, half.as_bytes()).expect("sent");
    assert_eq!(
        read_answer(&mut pool[3].stream).expect("an answer").pid,
        old
    );
    let new = reload(&env, &sup, bin, &[]);
    all_moved_to(&mut pool[..3], new, &sup);
    assert!(!pool[3].is_open(), "the one with half a body was closed");
    none_lost(&mut pool, new, &sup);
    assert_eq!(pool[3].closed, 1);
    assert!(
        sup.logs()
            .contains("; 3 connections moved to the new child"),
        "{}",
        sup.logs()
    );
}

#[test]
fn a_connection_that_has_sent_nothing_yet_moves_too() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let addr = sup.addr("http");
    // Accepted by the old process, which has read nothing from it.
    let old = sup.child_pid();
    let before = littleboss_tests::socket_inodes(old).len();
    let mut fresh = Pooled::open(addr);
    sup.wait_for("the old child to accept it", || {
        (littleboss_tests::socket_inodes(old).len() > before).then_some(())
    });
    let new = reload(&env, &sup, bin, &[]);
    assert!(fresh.is_open());
    assert_eq!(
        fresh.get().expect("an answer"),
        Answer {
            pid: new,
            close: false
        }
    );
    assert_eq!(fresh.closed, 0);
}

#[test]
fn a_new_process_that_refuses_or_is_slow_to_take_connections_loses_none() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    // The serving child has 300 ms to take a connection before it is recalled.
    let sup = env.start_with(
        bin,
        &["--http=127.0.0.1:0"],
        &[("LITTLEBOSS_TEST_TAKE_MS", "300")],
    );
    sup.wait_running();
    let mut pool = pool_of(&sup, 20);
    // It says it adopts, then declines each one: they go back, and the old process
    // winds them down by closing them while they are idle.
    let new = reload(&env, &sup, bin, &["--refuse"]);
    none_lost(&mut pool, new, &sup);
    assert!(pool.iter().all(|c| c.closed == 1), "none moved");

    // Back to a process that takes them, then to one that takes nothing for 3 s: they
    // are recalled, declined, and wound down by the old process.
    let new = reload(&env, &sup, bin, &[]);
    none_lost(&mut pool, new, &sup);
    let new = reload(&env, &sup, bin, &["--take-after-ms", "3000"]);
    none_lost(&mut pool, new, &sup);
    assert!(
        pool.iter().all(|c| c.closed >= 2),
        "none moved to the slow one"
    );
    let log = sup.logs();
    assert!(
        !log.contains("lb-adopt: pid"),
        "the slow one took nothing: {log}"
    );
}

#[test]
fn a_supervisor_with_a_small_cap_sends_the_rest_back_and_loses_none() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let sup = env.start_with(
        bin,
        &["--http=127.0.0.1:0"],
        &[("LITTLEBOSS_TEST_MOVE_CAP", "2")],
    );
    sup.wait_running();
    let mut pool = pool_of(&sup, 30);
    for _ in 0..3 {
        let new = reload(&env, &sup, bin, &[]);
        none_lost(&mut pool, new, &sup);
    }
}

#[test]
fn a_server_that_drains_instead_closes_idle_connections() {
    // `Server::hand_over(false)`: the way without moving, for comparison.
    let env = Env::new();
    let bin = bin!("lb-serve");
    let sup = env.start(bin, &["--http=127.0.0.1:0", "--", "--no-hand-over"]);
    let mut pool = pool_of(&sup, 5);
    let new = reload(&env, &sup, bin, &["--no-hand-over"]);
    none_lost(&mut pool, new, &sup);
    assert!(pool.iter().all(|c| c.closed == 1), "each was closed");
}

#[test]
fn under_protocol_2_connections_wind_down_by_closing() {
    // A supervisor (and so its children) narrowed to protocol 2, which has no messages
    // for moving connections: the helper drains as before.
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let sup = env.start_with(
        bin,
        &["--http=127.0.0.1:0"],
        &[("LITTLEBOSS_TEST_PROTOCOLS", "1-2")],
    );
    sup.wait_running();
    let mut pool = pool_of(&sup, 5);
    let new = reload(&env, &sup, bin, &[]);
    none_lost(&mut pool, new, &sup);
    assert!(
        pool.iter().all(|c| c.closed == 1),
        "each was closed, none moved"
    );
}

#[test]
fn the_handoff_example_moves_a_line_connection_with_its_unfinished_line() {
    let env = Env::new();
    let bin = example!("handoff");
    let sup = env.start(&bin, &["--lines=127.0.0.1:0"]);
    let addr = sup.addr("lines");
    let mut stream = connect(addr);
    let line = |stream: &mut TcpStream| {
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while answer.last() != Some(&b'\n') {
            match stream.read(&mut byte) {
                Ok(1) => answer.push(byte[0]),
                other => panic!("reading a line: {other:?}\n{}", sup.logs()),
            }
        }
        String::from_utf8(answer).expect("text")
    };
    let first = sup.child_pid();
    stream.write_all(b"one\n").expect("sent");
    assert_eq!(line(&mut stream), format!("pid {first}: one\n"));
    // Half a line is read by the old process, and moves with the connection.
    stream.write_all(b"tw").expect("sent");
    let new = reload(&env, &sup, &bin, &[]);
    stream.write_all(b"o\n").expect("sent");
    assert_eq!(line(&mut stream), format!("pid {new}: two\n"));
}

#[test]
fn fds_stay_flat_over_100_reloads_with_500_pooled_connections() {
    let env = Env::new();
    let bin = bin!("lb-adopt");
    let copy = env.copy_binary(bin, "lb-adopt-2");
    let sup = env.start(bin, &["--http=127.0.0.1:0"]);
    let mut pool = pool_of(&sup, 500);
    let mut counts = Vec::new();
    for i in 0..100 {
        let new = reload(&env, &sup, if i % 2 == 0 { &copy } else { bin }, &[]);
        for (n, conn) in pool.iter().enumerate() {
            assert!(
                conn.is_open(),
                "reload {i}: connection {n} was closed\n{}",
                sup.logs()
            );
        }
        if i % 10 == 9 {
            all_moved_to(&mut pool, new, &sup);
            let supervisor = fd_count(sup.pid()).expect("the supervisor's fds");
            let child = fd_count(new).expect("the child's fds");
            counts.push((supervisor, child));
        }
    }
    assert!(pool.iter().all(|c| c.closed == 0));
    let (first, rest) = counts.split_first().expect("counts");
    for count in rest {
        assert_eq!(
            count, first,
            "fds (supervisor, child) after each 10 reloads: {counts:?}"
        );
    }
    assert!(
        first.1 >= 500,
        "the child holds the 500 connections: {counts:?}"
    );
}

/// The TLS suites a moved session continues: TLS 1.3's three, and TLS 1.2's ECDHE
/// with AES-GCM and ChaCha20-Poly1305 (the test certificate is ECDSA).
fn tls_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as s;
    vec![
        s::TLS13_AES_128_GCM_SHA256,
        s::TLS13_AES_256_GCM_SHA384,
        s::TLS13_CHACHA20_POLY1305_SHA256,
        s::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        s::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        s::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// A client of `certs` that speaks only `suite` (and its protocol version), HTTP/1.1.
fn tls_client(certs: &Certs, suite: rustls::SupportedCipherSuite) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.der.clone()).expect("trust the certificate");
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    };
    let version = if suite.tls13().is_some() {
        &rustls::version::TLS13
    } else {
        &rustls::version::TLS12
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("the suite's version")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_secret_extraction = true;
    Arc::new(config)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// `GET /tls` on `stream`: the whole response, which ends with what the request's
/// `TlsInfo` said (`lb-serve`'s `pid PID sni NAME alpn PROTO`).
fn tls_info(stream: &mut TlsStream) -> String {
    send_part(stream, b"GET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("sent");
    let mut said = Vec::new();
    let mut chunk = [0u8; 4096];
    while !said.ends_with(b"\n") || !said.windows(5).any(|w| w == b"alpn ") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => said.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&said).into_owned()
}

/// A pooled HTTPS connection: one TLS session, checked before each reuse.
struct TlsPooled {
    stream: TlsStream,
    suite: String,
}

impl TlsPooled {
    fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsPooled {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let conn = rustls::ClientConnection::new(config, name).expect("a TLS client");
        let suite = format!("{:?}", conn.negotiated_cipher_suite().map(|s| s.suite()));
        let mut pooled = TlsPooled {
            stream: rustls::StreamOwned::new(conn, connect(addr)),
            suite,
        };
        pooled
            .stream
            .conn
            .complete_io(&mut pooled.stream.sock)
            .expect("a handshake");
        pooled.suite = format!("{:?}", pooled.stream.conn.negotiated_cipher_suite());
        pooled
    }

    /// Whether the session is still open, as a pooled client looks before it reuses
    /// it: what came meanwhile (session tickets) is read without waiting, and neither
    /// an end, an alert nor a `close_notify` came.
    fn is_open(&mut self) -> bool {
        let (conn, sock) = (&mut self.stream.conn, &mut self.stream.sock);
        sock.set_nonblocking(true).expect("non-blocking");
        let open = loop {
            match conn.read_tls(sock) {
                Ok(0) => break false,
                Ok(_) => match conn.process_new_packets() {
                    Ok(state) if state.peer_has_closed() || state.plaintext_bytes_to_read() > 0 => {
                        break false;
                    }
                    Ok(_) => {}
                    Err(_) => break false,
                },
                Err(e) => break e.kind() == std::io::ErrorKind::WouldBlock,
            }
        };
        sock.set_nonblocking(false).expect("blocking");
        open
    }

    /// `GET /` on its one session; what a closed or broken session gave instead.
    fn get(&mut self) -> Result<Answer, String> {
        if !self.is_open() {
            return Err(format!("{}: the connection was closed", self.suite));
        }
        request(&mut self.stream).map_err(|e| format!("{}: {e}", self.suite))
    }
}

/// `lb-serve` over TLS (`lb-serve --http=127.0.0.1:0 -- --cert ... --key ...`) with a
/// new certificate for `localhost`, its environment with `vars`.
fn start_tls<'e>(env: &'e Env, vars: &[(&str, &str)]) -> (Supervisor<'e>, Certs) {
    let certs = Certs::new(env.path(), "localhost");
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let args = ["--http=127.0.0.1:0", "--", "--cert", cert, "--key", key];
    let sup = start_with_env(env, bin!("lb-serve"), vars, &args);
    (sup, certs)
}

/// One pooled TLS connection to `addr` in each suite of [`tls_suites`].
fn tls_pool(addr: SocketAddr, certs: &Certs) -> Vec<TlsPooled> {
    (tls_suites().into_iter())
        .map(|suite| TlsPooled::open(addr, tls_client(certs, suite)))
        .collect()
}

/// Pooled HTTPS clients, one per suite a moved session continues (TLS 1.3 and 1.2),
/// each keep their one connection through 20 reloads: every answer comes from the new
/// process, none says `Connection: close`, none is closed. A session moved that often
/// has moved from a process that itself continued it, and its sequence numbers went on.
/// Two upgrades of the supervisor move them too. Then a client asks for new keys on its
/// moved session: the server cannot make them and ends the session with an alert, and
/// the next connection is served.
#[test]
fn tls_connections_move_in_every_suite_through_twenty_reloads_with_no_close() {
    let env = Env::new();
    let bin = bin!("lb-serve");
    let (sup, certs) = start_tls(&env, &[]);
    let addr = sup.addr("http");
    let first = sup.child_pid();
    let mut pool = tls_pool(addr, &certs);
    for conn in &mut pool {
        let answer = conn.get().unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
        assert_eq!(
            answer,
            Answer {
                pid: first,
                close: false
            }
        );
        let said = tls_info(&mut conn.stream);
        let want = format!("pid {first} sni localhost alpn http/1.1\n");
        assert!(said.ends_with(&want), "{}: {said:?}", conn.suite);
    }
    for round in 0..20 {
        let new = reload(&env, &sup, bin, &[]);
        for conn in &mut pool {
            let answer = conn
                .get()
                .unwrap_or_else(|e| panic!("reload {round}: {e}\n{}", sup.logs()));
            assert_eq!(
                answer,
                Answer {
                    pid: new,
                    close: false
                },
                "{}",
                conn.suite
            );
        }
    }
    assert_moved(&sup.logs(), pool.len(), 20);
    // An upgrade of the supervisor moves them as a reload does.
    for _ in 0..2 {
        let old = sup.child_pid();
        let outcome = env.run(bin, &["--littleboss=upgrade"]);
        assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
        wait_gone(old, "the old child");
        let new = sup.child_pid();
        for conn in &mut pool {
            let answer = conn
                .get()
                .unwrap_or_else(|e| panic!("upgrade: {e}\n{}", sup.logs()));
            assert_eq!(
                answer,
                Answer {
                    pid: new,
                    close: false
                },
                "{}",
                conn.suite
            );
        }
    }
    assert_moved(&sup.logs(), pool.len(), 22);
    // The service sees what the handshake said, though another process did it.
    let last = sup.child_pid();
    for conn in &mut pool {
        let said = tls_info(&mut conn.stream);
        let want = format!("pid {last} sni localhost alpn http/1.1\n");
        assert!(said.ends_with(&want), "{}: {said:?}", conn.suite);
    }
    // New keys asked on a TLS 1.3 session that moved: it ends, with an alert.
    let conn = &mut pool[0];
    conn.stream
        .conn
        .refresh_traffic_keys()
        .expect("a key update");
    let ended = request(&mut conn.stream);
    assert!(ended.is_err(), "{ended:?}");
    let mut fresh = TlsPooled::open(addr, tls_client(&certs, tls_suites()[0]));
    assert_eq!(fresh.get().map(|a| a.pid), Ok(sup.child_pid()));
    let log = sup.logs();
    assert!(!log.contains("panicked"), "{log}");
}

/// The keys of a TLS session that moves reach no log line, no `status`, no journal:
/// the client takes its session's keys (the server's are the same) and looks for them,
/// raw and in hex, in everything the supervisor says after the session moved.
#[test]
fn the_keys_of_a_moving_tls_session_are_never_shown() {
    let env = Env::new();
    let bin = bin!("lb-serve");
    let (sup, certs) = start_tls(&env, &[]);
    let addr = sup.addr("http");
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut sockets = Vec::new();
    for suite in tls_suites() {
        let mut conn = TlsPooled::open(addr, tls_client(&certs, suite));
        conn.get().unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
        let TlsStream { conn: client, sock } = conn.stream;
        let secrets = client
            .dangerous_extract_secrets()
            .expect("the client's keys");
        for (_, secrets) in [secrets.tx, secrets.rx] {
            use rustls::ConnectionTrafficSecrets as S;
            let (key, iv) = match &secrets {
                S::Aes128Gcm { key, iv }
                | S::Aes256Gcm { key, iv }
                | S::Chacha20Poly1305 { key, iv } => (key.as_ref().to_vec(), iv.as_ref().to_vec()),
                _ => panic!("a suite the test does not know"),
            };
            keys.push(key);
            keys.push(iv);
        }
        // Kept open (and idle), so that it moves.
        sockets.push(sock);
    }
    reload(&env, &sup, bin, &[]);
    assert_moved(&sup.logs(), sockets.len(), 1);
    let mut said = sup.logs().into_bytes();
    for command in [
        "--littleboss=status",
        "--littleboss=status-json",
        "--littleboss=history",
        "--littleboss=history-json",
    ] {
        let outcome = env.run(bin, &[command]);
        assert_eq!(outcome.code(), Some(0), "{outcome}");
        said.extend(outcome.stdout.as_bytes());
        said.extend(outcome.stderr.as_bytes());
    }
    for key in &keys {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let text = String::from_utf8_lossy(&said).to_ascii_lowercase();
        assert!(!text.contains(&hex), "a key in hex in what was said");
        assert!(
            !said.windows(key.len()).any(|w| w == key.as_slice()),
            "a raw key in what was said"
        );
    }
}

/// Pooled HTTPS clients through a probation that fails: their sessions move to the new
/// process when the old one stands by, and back to the old one at the rollback, which
/// continues them with its own record layer (rustls is gone from them); none is closed,
/// and the next reload moves them on again.
#[test]
fn tls_connections_move_to_a_child_on_probation_and_back_at_its_rollback() {
    let env = Env::new();
    let certs = Certs::new(env.path(), "localhost");
    let cert = format!("--cert={}", certs.cert.display());
    let key = format!("--key={}", certs.key.display());
    let bin = bin!("lb-probation");
    let sup = env.start(bin, &[cert.as_str(), key.as_str()]);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let mut pool = tls_pool(addr, &certs);
    let mut all_answered_by = |pid: u32, what: &str| {
        sup.wait_for(what, || {
            let answers: Vec<u32> = (pool.iter_mut())
                .map(|conn| {
                    conn.get()
                        .unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()))
                        .pid
                })
                .collect();
            answers.iter().all(|&p| p == pid).then_some(())
        });
    };
    all_answered_by(old, "the first child's answers");
    let args = [
        "--littleboss=reload",
        "--",
        "--probation-ms=30000",
        "--unhealthy-after-ms=1500",
        cert.as_str(),
        key.as_str(),
    ];
    let client = env.spawn(bin, &args);
    let new = sup.wait_for("a child on probation", || {
        let status = sup.try_status().ok()?;
        let pid = status["child_pid"].as_u64()?;
        (status["state"] == "probation").then_some(pid as u32)
    });
    sup.track(new);
    all_answered_by(new, "the answers of the child on probation");
    assert_eq!(
        client.wait_code(),
        1,
        "{}{}",
        client.stdout(),
        client.stderr()
    );
    wait_gone(new, "the unhealthy child");
    all_answered_by(old, "the answers of the old child, resumed");
    let next = reload(&env, &sup, bin, &[cert.as_str(), key.as_str()]);
    all_answered_by(next, "the answers after the next reload");
}

/// Under a supervisor that speaks protocols only up to 6 (as one of the release before
/// does), TLS connections are not handed over: they wind down by closing, as before
/// protocol 7, and no request fails.
#[test]
fn under_a_supervisor_of_protocol_6_tls_connections_wind_down_by_closing() {
    let env = Env::new();
    let bin = bin!("lb-serve");
    let (sup, certs) = start_tls(&env, &[(TEST_PROTOCOLS, "1-6")]);
    let addr = sup.addr("http");
    let mut pool = tls_pool(addr, &certs);
    for conn in &mut pool {
        conn.get().unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
    }
    let new = reload(&env, &sup, bin, &[]);
    for conn in &mut pool {
        assert!(!conn.is_open(), "{}: closed by the old process", conn.suite);
    }
    let mut fresh = TlsPooled::open(addr, tls_client(&certs, tls_suites()[0]));
    assert_eq!(fresh.get().map(|a| a.pid), Ok(new));
    let log = sup.logs();
    assert!(!log.contains("connections moved"), "{log}");
}

/// A TLS connection is never sent to a child whose protocol has no TLS connections
/// (before 7), even one that adopts the listener's connections (a program that served
/// it in plaintext before): the supervisor declines it for that child, and the old
/// process, given it back, serves it to its end with the session it had taken out of
/// rustls.
#[test]
fn a_tls_connection_is_not_sent_to_a_child_of_protocol_6_that_adopts_its_listener() {
    use littleboss_tests::attack_support::{raw, wire};
    let env = Env::new();
    let (sup, certs) = start_tls(&env, &[("LB_FAKE_CHILD_NAME", "lbserve")]);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let mut pool = tls_pool(addr, &certs);
    for conn in &mut pool {
        conn.get().unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
    }
    let fake = bin!("lb-fake-child");
    let path = fake.to_str().expect("a UTF-8 path").as_bytes();
    let fake_args: [&[u8]; 2] = [b"lb-fake-child", b"adopt-6"];
    let request = wire::reload_request(path, Some(&fake_args), &[]);
    let answer = raw::ask(&env.socket("lbserve"), &request);
    let Ok(wire::Response::Reloaded { new_pid, .. }) = answer else {
        panic!("{answer:?}\n{}", sup.logs());
    };
    sup.track(new_pid);
    // Given back, each session is served to its end by the old process, continued by
    // its own record layer (rustls let go of it): its next answer, in lameduck, says
    // `Connection: close`.
    for conn in &mut pool {
        let closing = (0..100).find_map(|_| {
            let answer = conn.get().unwrap_or_else(|e| panic!("{e}\n{}", sup.logs()));
            assert_eq!(answer.pid, old, "{}", conn.suite);
            answer.close.then_some(())
        });
        assert!(closing.is_some(), "{}: never told to close", conn.suite);
    }
    wait_gone(old, "the old child");
    let log = sup.logs();
    assert!(!log.contains("got message 4"), "nothing adopted: {log}");
    // Handed over, and given back to be wound down.
    let history = sup.run(&["--littleboss=history-json"]);
    let history: serde_json::Value = serde_json::from_str(&history.stdout).expect("JSON");
    let connections = &history["events"][0]["connections"];
    assert_eq!(connections["closed"], pool.len(), "{history}");
    assert_eq!(connections["moved"], 0, "{history}");
}
