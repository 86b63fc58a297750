//! `littleboss::http` and `littleboss::axum` with real processes and real clients:
//! `lb-serve` supervised, loaded over HTTP/1.1 (fresh connections and keep-alive),
//! HTTP/2 (multiplexed streams) and HTTPS while it is reloaded; and the wind-down's
//! parts one at a time: an idle connection during lameduck, streams in flight at
//! GOAWAY, a request longer than the lameduck time, an upgraded connection.
//!
//! A lost request fails a test; an HTTP/2 stream the server refused (above its GOAWAY's
//! last stream id), which the client retries as RFC 9113 allows, does not.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use littleboss_tests::http_support::{
    Certs, Client, Load, Outcome, Pattern, Report, Version, load,
};
use littleboss_tests::reload_support::KeepAlive;
use littleboss_tests::{DEADLINE, Env, HTTP_TIMEOUT, Supervisor, bin, wait_gone};

/// The most requests one load worker sends.
const MAX_REQUESTS: u64 = 20_000;

/// How many answers the load gets from each child before it is replaced.
const ANSWERS_PER_CHILD: u64 = 300;

/// A runtime for the clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Starts `lb-serve ARGS` supervised on a free port.
fn start<'e>(env: &'e Env, args: &[&str]) -> Supervisor<'e> {
    let mut all = vec!["--http=127.0.0.1:0"];
    if !args.is_empty() {
        all.push("--");
        all.extend_from_slice(args);
    }
    env.start(bin!("lb-serve"), &all)
}

/// Reloads `sup` (alternating its binary and a copy) `reloads` times under the load of
/// `workers`, waiting each time until the old child is gone; returns what the load saw.
fn reload_under_load(
    env: &Env,
    sup: &Supervisor<'_>,
    workers: &[(Client, Pattern)],
    reloads: usize,
) -> Report {
    let runtime = runtime();
    let shared = Load::new(MAX_REQUESTS, Duration::from_millis(2));
    let handles: Vec<_> = workers
        .iter()
        .map(|(client, pattern)| runtime.spawn(load(client.clone(), *pattern, shared.clone())))
        .collect();
    let copy = env.copy_binary(sup.bin(), "lb-serve-2");
    let mut pids = vec![sup.child_pid()];
    for i in 0..reloads {
        // Each child serves a share of the load before it is replaced.
        let before = shared.answered();
        sup.wait_for("the load to be answered", || {
            (shared.answered() >= before + ANSWERS_PER_CHILD).then_some(())
        });
        let old = sup.child_pid();
        let binary = if i % 2 == 0 {
            copy.as_path()
        } else {
            sup.bin()
        };
        let reload = env.run(binary, &["--littleboss=reload"]);
        assert_eq!(reload.code(), Some(0), "{reload}\n{}", sup.logs());
        let new = sup.child_pid();
        assert_ne!(new, old);
        pids.push(new);
        wait_gone(old, "the old child");
        sup.wait_for_log(&format!("old child pid {old} exited with code 0"));
    }
    let before = shared.answered();
    sup.wait_for("the load to be answered", || {
        (shared.answered() >= before + ANSWERS_PER_CHILD).then_some(())
    });
    shared.stop();
    let mut report = Report::default();
    for handle in handles {
        report.merge(runtime.block_on(handle).expect("a load worker"));
    }
    assert!(
        report.failures.is_empty(),
        "{} requests lost of {} ({} retried):\n{}\n{}",
        report.failures.len(),
        report.answered + report.failures.len() as u64,
        report.retried,
        report.failures.join("\n"),
        sup.logs()
    );
    eprintln!(
        "{} answered by {:?}, {} retried, {} connections, {} answers said Connection: close",
        report.answered, report.pids, report.retried, report.connections, report.closes
    );
    assert!(report.answered > 0, "no request was answered");
    assert!(
        report.pids.len() > 1,
        "answers from {:?} only, through {reloads} reloads of {pids:?}",
        report.pids
    );
    assert!(
        report.pids.iter().all(|pid| pids.contains(pid)),
        "{:?} vs {pids:?}",
        report.pids
    );
    report
}

#[test]
fn http1_and_h2c_lose_no_request_through_reloads() {
    let env = Env::new();
    let sup = start(&env, &[]);
    let addr = sup.addr("http");
    let workers = [
        (Client::plain(addr, Version::Http1), Pattern::Fresh),
        (Client::plain(addr, Version::Http1), Pattern::KeepAlive),
        (Client::plain(addr, Version::Http1), Pattern::KeepAlive),
        (Client::plain(addr, Version::Http2), Pattern::Streams(8)),
        (Client::plain(addr, Version::Http2), Pattern::Streams(8)),
    ];
    let report = reload_under_load(&env, &sup, &workers, 4);
    assert!(report.closes > 0, "no response said Connection: close");
}

#[test]
fn axum_loses_no_request_through_reloads() {
    let env = Env::new();
    let sup = start(&env, &["--axum"]);
    let addr = sup.addr("http");
    let workers = [
        (Client::plain(addr, Version::Http1), Pattern::Fresh),
        (Client::plain(addr, Version::Http1), Pattern::KeepAlive),
        (Client::plain(addr, Version::Http2), Pattern::Streams(8)),
    ];
    reload_under_load(&env, &sup, &workers, 3);
}

#[test]
fn https_loses_no_request_through_reloads() {
    let env = Env::new();
    let certs = Certs::new(env.path(), "localhost");
    let cert = certs.cert.to_str().expect("UTF-8");
    let key = certs.key.to_str().expect("UTF-8");
    let sup = start(&env, &["--cert", cert, "--key", key]);
    let addr = sup.addr("http");
    let workers = [
        (Client::tls(addr, Version::Http1, &certs), Pattern::Fresh),
        (
            Client::tls(addr, Version::Http1, &certs),
            Pattern::KeepAlive,
        ),
        (
            Client::tls(addr, Version::Http2, &certs),
            Pattern::Streams(4),
        ),
        (
            Client::tls(addr, Version::Http2, &certs),
            Pattern::Streams(4),
        ),
    ];
    reload_under_load(&env, &sup, &workers, 3);
}

#[test]
fn lameduck_time_is_the_declared_one_supervised_and_bypassed() {
    let env = Env::new();
    let sup = start(&env, &[]);
    let pid = sup.child_pid();
    sup.wait_for_log(&format!("lb-serve: pid {pid} lameduck time 2s"));
    let direct = env.spawn(bin!("lb-serve"), &["--http=127.0.0.1:0"]);
    direct.wait_for_log(&format!("lb-serve: pid {} lameduck time 2s", direct.pid()));
}

/// Reloads `sup` and returns the old child's pid, now in lameduck.
fn reload(sup: &Supervisor<'_>) -> u32 {
    let old = sup.child_pid();
    let reload = sup.run(&["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    sup.wait_for_log(&format!("lb-serve: pid {old} lameduck"));
    old
}

#[test]
fn an_idle_keep_alive_connection_is_answered_during_lameduck_then_closed() {
    let env = Env::new();
    // Without moving connections to the new process: the wind-down by closing.
    let sup = start(&env, &["--no-hand-over"]);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let mut busy = KeepAlive::connect(addr).expect("connect");
    let first = busy.get().expect("GET");
    assert!(
        first.body.contains(&format!("pid {old}")) && !first.close,
        "{first:?}"
    );
    // One that has sent nothing at all, accepted by the old child before lameduck.
    let mut silent = TcpStream::connect(addr).expect("connect");
    let mut idle = KeepAlive::connect(addr).expect("connect");
    let answer = idle.get().expect("GET");
    assert!(answer.body.contains(&format!("pid {old}")), "{answer:?}");

    reload(&sup);
    // The next request on a connection accepted before lameduck: still the old child's,
    // with `Connection: close`, then a clean end.
    let during = busy.get().expect("a request during lameduck");
    assert_eq!(during.status, 200);
    assert!(during.body.contains(&format!("pid {old}")), "{during:?}");
    assert!(
        during.close,
        "no Connection: close during lameduck: {during:?}"
    );
    busy.expect_clean_close().expect("a clean close");
    // The silent connection is answered too, within the grace period.
    silent
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    silent
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    let mut response = String::new();
    silent
        .read_to_string(&mut response)
        .expect("read until the server closes");
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains(&format!("pid {old}")),
        "{response:?}"
    );
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response:?}"
    );
    // The one that stays idle is closed after the grace period, cleanly.
    idle.expect_clean_close()
        .expect("the idle connection closed cleanly");
    wait_gone(old, "the old child");
    sup.wait_for_log(&format!("old child pid {old} exited with code 0"));
}

#[test]
fn http2_streams_in_flight_at_goaway_finish() {
    let env = Env::new();
    let sup = start(&env, &[]);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let runtime = runtime();
    let client = Client::plain(addr, Version::Http2);
    let connection = runtime.block_on(client.connect()).expect("connect");
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let mut stream = connection.stream().expect("an HTTP/2 stream");
            runtime.spawn(async move { stream.get("/slow/800", false).await })
        })
        .collect();
    sup.wait_for(&format!("3 slow requests at pid {old}"), || {
        let needle = format!("lb-serve: pid {old} slow 800");
        (sup.stderr().matches(&needle).count() == 3).then_some(())
    });
    reload(&sup);
    for stream in streams {
        let outcome = runtime.block_on(stream).expect("a stream");
        assert_eq!(
            outcome,
            Outcome::Answered {
                pid: old,
                close: false
            },
            "{}",
            sup.logs()
        );
    }
    // The connection is going away: a new stream is not taken, and the client retries it.
    let mut late = connection.stream().expect("an HTTP/2 stream");
    let outcome = runtime.block_on(late.get("/", false));
    assert!(matches!(outcome, Outcome::Retry(_)), "{outcome:?}");
    let new = sup.child_pid();
    let again = runtime.block_on(client.get_once("/"));
    assert_eq!(
        again,
        Outcome::Answered {
            pid: new,
            close: false
        }
    );
    wait_gone(old, "the old child");
}

#[test]
fn an_http1_request_in_flight_at_lameduck_finishes_with_connection_close() {
    let env = Env::new();
    // Without moving connections to the new process: the wind-down by closing.
    let sup = start(&env, &["--no-hand-over"]);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /slow/800 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    sup.wait_for_log(&format!("lb-serve: pid {old} slow 800"));
    reload(&sup);
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read until the server closes");
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    assert!(response.contains(&format!("pid {old}")), "{response:?}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response:?}"
    );
}

#[test]
fn serve_returns_within_the_lameduck_time() {
    let env = Env::new();
    let sup = start(&env, &[]);
    let addr = sup.addr("http");
    let old = sup.child_pid();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /slow/60000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    sup.wait_for_log(&format!("lb-serve: pid {old} slow 60000"));
    let t0 = Instant::now();
    reload(&sup);
    sup.wait_for_log(&format!("lb-serve: pid {old} done"));
    // Its own exit, before the supervisor's kill at 2 s.
    sup.wait_for_log(&format!("old child pid {old} exited with code 0"));
    assert!(t0.elapsed() < DEADLINE);
    assert!(
        sup.stderr().contains(
            "littleboss: listener http: 1 connection(s) still open 1s 800ms after lameduck, closed"
        ),
        "{}",
        sup.logs()
    );
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

#[test]
fn an_upgraded_connection_is_the_programs_and_sees_lameduck() {
    let env = Env::new();
    let sup = start(&env, &[]);
    let addr: SocketAddr = sup.addr("http");
    let old = sup.child_pid();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .expect("write");
    let head = read_until(&mut stream, b"\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head:?}"
    );
    stream.write_all(b"ping").expect("write");
    assert_eq!(read_until(&mut stream, b"ping"), "ping");
    reload(&sup);
    // The program's own wind-down: `bye`, then the end.
    let mut rest = String::new();
    stream
        .read_to_string(&mut rest)
        .expect("read until the end");
    assert_eq!(rest, "bye\n");
    wait_gone(old, "the old child");
    sup.wait_for_log(&format!("old child pid {old} exited with code 0"));
}

/// Reads from `stream` until what was read ends with `end`.
fn read_until(stream: &mut TcpStream, end: &[u8]) -> String {
    let mut read = Vec::new();
    let mut byte = [0u8; 1];
    while !read.ends_with(end) {
        let n = stream.read(&mut byte).expect("read");
        assert_eq!(n, 1, "the end of the stream after {read:?}");
        read.push(byte[0]);
    }
    String::from_utf8_lossy(&read).into_owned()
}

/// `GET /` over a unix socket: the pid in the answer.
fn unix_get(path: &std::path::Path) -> std::io::Result<Option<u32>> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .starts_with("HTTP/1.1 200")
        .then(|| littleboss_tests::http_support::pid_in(&response))
        .flatten())
}

#[test]
fn a_unix_listener_is_served_beside_a_tcp_one_through_reloads() {
    let env = Env::new();
    let path = env.path().join("serve.sock");
    let flag = format!("--sock={}", path.display());
    let sup = env.start(
        bin!("lb-serve"),
        &["--http=127.0.0.1:0", flag.as_str(), "--", "--unix"],
    );
    let first = sup.child_pid();
    assert_eq!(
        unix_get(&path).expect("GET over the unix socket"),
        Some(first)
    );
    let runtime = runtime();
    let tcp = Client::plain(sup.addr("http"), Version::Http2);
    assert_eq!(
        runtime.block_on(tcp.get_once("/")),
        Outcome::Answered {
            pid: first,
            close: false
        }
    );
    let old = reload(&sup);
    let second = sup.child_pid();
    assert_eq!(unix_get(&path).expect("GET after the reload"), Some(second));
    wait_gone(old, "the old child");
    sup.wait_for_log(&format!("old child pid {old} exited with code 0"));
}

/// The CPU time process `pid` has used, from `/proc/PID/stat` (in clock ticks).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the stat file");
    let rest = &stat[stat.rfind(')').expect("a command") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the file, the 12th and 13th after the command.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn out_of_file_descriptors_it_pauses_accepts_instead_of_spinning_and_recovers() {
    let env = Env::new();
    let sup = start(&env, &["--max-fds", "64"]);
    let addr = sup.addr("http");
    let pid = sup.child_pid();
    // Connections that send nothing hold the server's fds; the rest wait in the queue.
    let held: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    sup.wait_for_log("littleboss: listener http: accept: Too many open files");
    // A second with accepts failing: a loop that spun on them would use all of it.
    let before = cpu_ticks(pid);
    let window = Instant::now();
    sup.wait_for("a second out of fds", || {
        (window.elapsed() >= Duration::from_secs(1)).then_some(())
    });
    let used = cpu_ticks(pid) - before;
    assert!(used < 30, "{used} ticks of CPU in a second out of fds");
    drop(held);
    // It serves again once fds are free.
    let client = Client::plain(addr, Version::Http1);
    let runtime = runtime();
    sup.wait_for("an answer once fds are free", || {
        match runtime.block_on(client.get_once("/")) {
            Outcome::Answered { pid: p, .. } if p == pid => Some(()),
            _ => None,
        }
    });
}

#[test]
fn a_tls_handshake_that_does_not_come_times_out() {
    let env = Env::new();
    let certs = Certs::new(env.path(), "localhost");
    let cert = certs.cert.to_str().expect("UTF-8");
    let key = certs.key.to_str().expect("UTF-8");
    let sup = start(
        &env,
        &["--cert", cert, "--key", key, "--tls-handshake-ms", "300"],
    );
    let addr = sup.addr("http");
    let mut silent = TcpStream::connect(addr).expect("connect");
    silent
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).expect("the server closes it");
    assert_eq!(n, 0);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    // A real handshake still works.
    let client = Client::tls(addr, Version::Http2, &certs);
    let outcome = runtime().block_on(client.get_once("/"));
    assert!(matches!(outcome, Outcome::Answered { .. }), "{outcome:?}");
}
