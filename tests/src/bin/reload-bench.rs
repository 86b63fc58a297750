//! The reload benchmark: the `http` example under load from several threads, reloaded
//! again and again, with failing reloads among them; prints one table.
//!
//! ```text
//! cargo build --release -p littleboss-examples --example http
//! cargo run --release -p littleboss-tests --bin reload-bench -- [--reloads 20] [--threads 4]
//! ```
//!
//! Load: `--threads` threads that open a fresh connection for each request, and as many
//! that keep connections alive (reconnecting when the server says `Connection: close`).
//! Every request is checked (status 200, a whole body); anything else is a failed
//! request. The reloads alternate two copies of the binary; every fifth one is a reload
//! that must fail (new arguments the program refuses, so the new process exits at
//! start) and roll back. A reload window runs from the reload command's start until the
//! old process has exited. Throughput supervised and bypassed is measured side by side,
//! in alternating slices, on the same machine in the same run.
//!
//! `--mode compare` puts the HTTP helpers beside the plain way, each server supervised
//! and reloaded `--reloads` times under the same load:
//!
//! ```text
//! cargo build --release -p littleboss-examples --examples
//! cargo build --release -p littleboss-tests --bins
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode compare
//! ```
//!
//! - HTTP/1.1 (`--threads` fresh-connection and as many keep-alive workers) and h2c
//!   (`--threads` connections of 8 concurrent streams), against the `axum` example
//!   (`littleboss::axum::serve`) and `lb-axum-plain` (`axum::serve(listener, app)
//!   .with_graceful_shutdown(lb.lameduck())`);
//! - HTTPS, HTTP/1.1 and HTTP/2 by ALPN, against the `https` example
//!   (`littleboss::http` with TLS; plain `axum::serve` has no TLS).
//!
//! An HTTP/2 stream the server refused (above its GOAWAY's last stream id) and a request
//! hyper handed back unsent are retried on a new connection and counted as retried,
//! not failed.
//!
//! `--mode pooled` is about idle keep-alive connections, as browsers, reqwest and Go's
//! client pool them: `--clients` clients (default 400), each with one connection that
//! it uses for a request now and then, pausing a random time of up to `--max-pause-ms`
//! (default 3000) in between, and that it checks before each reuse (a non-blocking
//! peek: closed by the server, it opens a new one); see
//! `littleboss_tests::pool_support`. Each server is supervised and reloaded
//! `--reloads` times, `--interval-ms` apart (default 1000 in this mode, so that the
//! pooled connections are idle across the reloads):
//!
//! ```text
//! cargo build --release -p littleboss-examples --examples
//! cargo build --release -p littleboss-tests --bins
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode pooled
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode pooled --reloads 12 --clients 400
//! ```
//!
//! - the `http` example (`littleboss::http::serve`) and the `axum` example
//!   (`littleboss::axum::serve`), which hand idle HTTP/1.1 connections over to the new
//!   process;
//! - the `http` example again, replaced by `--littleboss=upgrade` each time (the
//!   supervisor too, after the child): connections move as at a reload;
//! - the `https` example (`littleboss::http::Server::tls`, a new self-signed
//!   certificate), with TLS clients (rustls, TLS 1.3, ALPN `http/1.1`; the check before
//!   reuse reads what came without waiting): TLS sessions move with their
//!   connections;
//! - `lb-axum-drain` (`littleboss::http::Server::new().hand_over(false)`), the helper
//!   winding down by closing;
//! - `lb-axum-plain` (plain `axum::serve`).
//!
//! `--mode idle` holds 100, 1,000 and 10,000 idle keep-alive connections to the `http`
//! example (each has served one request) through one reload, and 10,000 through one
//! `upgrade` (the supervisor too), and reports how long the
//! old process took to be gone (every connection handed over) and how many
//! connections were closed; then each connection sends one more request, which must
//! be answered by the new process:
//!
//! ```text
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode idle
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode idle --connections 10000
//! ```
//!
//! With `--connections N`, only N connections, through one reload and one upgrade.
//!
//! It prints the requests, the failed ones (among them those sent on a reused
//! connection just as the server closed it, the keep-alive race), the connections the
//! server closed, the `Connection: close` answers, and the time from the reload
//! command until the old child exited.
//!
//! `--mode metrics` serves `lb-metrics` (the HTTP helpers; its supervisor serves its
//! metrics) supervised, and measures its throughput (fresh connections, as `http1`'s
//! baseline) in alternating slices with a scraper polling `GET /metrics` every 100 ms
//! and without; then the supervisor's private memory (`smaps_rollup`) with its journal
//! empty, and full after 300 reloads:
//!
//! ```text
//! cargo build --release -p littleboss-tests --bins
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode metrics
//! ```
//!
//! `--mode state` reloads `lb-state` (state transfer) with states of 1 MiB, 64 MiB and
//! 1 GiB, each with 100 named fds, and with none (it offers nothing): the reload
//! command's time, and the new process's time from asking for the state to having it
//! and to having read its bytes once, against the floor of this machine (writing the
//! bytes into a memfd and reading them once, measured here); and the supervisor's
//! private memory before and after:
//!
//! ```text
//! cargo build --release -p littleboss-tests --bins
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode state
//! ```
//!
//! `--mode tls` measures what a TLS connection that moved costs the new process,
//! against a fresh one: `--clients` (default 400) rustls clients (TLS 1.3, their
//! default suites, HTTP/1.1) connect to the `https` example, one request each, and stay
//! idle; a reload moves them, and the new process's CPU time (all its threads,
//! `/proc/PID/task/*/schedstat`) is read once the old one is gone, against a new
//! process's own start with no connection; then each sends one request. Then the same
//! number of fresh connections (connect, handshake, one request) go to a new process.
//! Per connection, it prints the CPU to take a moved session, the CPU of a fresh
//! connection less a request's, a request's for scale, and the client's time to its
//! first answer on a moved connection and on a fresh one:
//!
//! ```text
//! cargo build --release -p littleboss-examples --examples
//! cargo build --release -p littleboss-tests --bins
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode tls
//! ```
//!
//! `--mode probation` reloads `lb-probation` (on the HTTP helpers, answering with its
//! pid), supervised, under the load of the default mode, `--reloads` times (default
//! 20), alternating two copies of it, to new children that declare a probation and in
//! turn crash (exit with code 101) 500 ms after they start serving, call `unhealthy`
//! 500 ms after, or pass (a probation of 2 s that runs out; the failing ones declare
//! 30 s). A failing reload must give the service back to the old child, which stood by,
//! and exit 1; a passing one must exit 0:
//!
//! ```text
//! cargo build --release -p littleboss-tests --bins
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode probation
//! cargo run --release -p littleboss-tests --bin reload-bench -- --mode probation --reloads 6
//! ```
//!
//! Per kind of reload and overall, it prints the requests (each counts for the reload
//! whose command started last before it was due); the failed ones, those on the
//! crashed process's connections apart (sent on a connection it answered last, or in
//! flight as it died: sent before its pidfd said it had exited, failed after it said it
//! exits), which are expected, from the others, which must be none; the time from the
//! crash (the new child's pidfd) or the `unhealthy` call (as `lb-probation
//! --print-times` prints it, on `CLOCK_MONOTONIC`) until the old process answers a
//! request on a new connection; the connections moved (the supervisor's log); the
//! reload commands' exit codes; and the RSS of the old and the new process 250 ms into
//! each probation.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use littleboss_tests::attack_support::{fd_count, vm_kib};
use littleboss_tests::http_support::Certs;
use littleboss_tests::zombie_children;

struct Options {
    reloads: usize,
    threads: usize,
    /// The pause after each reload (`--interval-ms`; 300 ms, or 1 s in `pooled` mode).
    interval: Duration,
    /// Pooled clients (`--clients`, `pooled` mode).
    clients: usize,
    /// The longest pause of a pooled client between two requests (`--max-pause-ms`).
    max_pause: Duration,
    slices: usize,
    slice: Duration,
    rate: u64,
    bin: PathBuf,
    mode: Mode,
    /// The supervisor's stderr is a FIFO with a 4 KiB pipe that nobody reads
    /// (`--stderr unread-fifo`; the default is `/dev/null`).
    unread_stderr: bool,
    /// `idle` mode: only this many connections (`--connections`).
    connections: Option<usize>,
}

/// What a run measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The `http` example over HTTP/1.1, with failing reloads and the bypass baseline.
    Http1,
    /// Side by side: `littleboss::axum::serve` and plain `axum::serve`, over HTTP/1.1
    /// and h2c, and `littleboss::http` over HTTPS.
    Compare,
    /// Pooled idle keep-alive clients: the helpers handing connections over, the helper
    /// draining by closing, and plain `axum::serve`.
    Pooled,
    /// Many idle keep-alive connections through one reload of the `http` example.
    Idle,
    /// `lb-probation` under load, reloaded to new children that crash, call
    /// `unhealthy` or pass their probation.
    Probation,
    /// `lb-metrics` under load with and without a scraper of its supervisor's metrics,
    /// and the supervisor's memory with its journal empty and full.
    Metrics,
    /// `lb-state` reloaded with states of 1 MiB, 64 MiB and 1 GiB and 100 fds, against
    /// the same reload with no state.
    State,
    /// What a TLS connection that moved costs the new process, against a fresh
    /// handshake.
    Tls,
}

/// Reloads enough to fill the journal (256 events) and then some.
const JOURNAL_FULL: usize = 300;

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            littleboss_tests::say!("reload-bench: {e}");
            littleboss_tests::say!(
                "usage: reload-bench [--mode http1|compare|pooled|idle|probation|metrics|state|tls] [--reloads N] [--threads N] [--interval-ms N] [--clients N] [--max-pause-ms N] [--slices N] [--slice-ms N] [--rate N] [--bin PATH] [--stderr null|unread-fifo]"
            );
            std::process::exit(2);
        }
    };
    let result = match options.mode {
        Mode::Http1 => run(&options),
        Mode::Compare => compare::run(&options),
        Mode::Pooled => pooled::run(&options),
        Mode::Idle => idle::run(options.connections),
        Mode::Probation => probation::run(&options),
        Mode::Metrics => metrics::run(&options),
        Mode::State => state::run(&options),
        Mode::Tls => tls_cost::run(&options),
    };
    if let Err(e) = result {
        littleboss_tests::say!("reload-bench: {e}");
        std::process::exit(1);
    }
}

fn parse_options() -> Result<Options, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let default_bin = exe
        .parent()
        .map(|dir| dir.join("examples").join("http"))
        .unwrap_or_default();
    let mut options = Options {
        reloads: 20,
        threads: 4,
        interval: Duration::from_millis(300),
        clients: 400,
        max_pause: littleboss_tests::pool_support::MAX_PAUSE,
        slices: 6,
        slice: Duration::from_secs(2),
        rate: 500,
        bin: default_bin,
        mode: Mode::Http1,
        unread_stderr: false,
        connections: None,
    };
    let mut interval = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--reloads" => options.reloads = number()? as usize,
            "--threads" => options.threads = number()?.max(1) as usize,
            "--interval-ms" => interval = Some(Duration::from_millis(number()?)),
            "--clients" => options.clients = number()?.max(1) as usize,
            "--max-pause-ms" => options.max_pause = Duration::from_millis(number()?),
            "--slices" => options.slices = number()?.max(1) as usize,
            "--slice-ms" => options.slice = Duration::from_millis(number()?),
            "--rate" => options.rate = number()?,
            "--connections" => options.connections = Some(number()?.max(1) as usize),
            "--bin" => options.bin = PathBuf::from(&value),
            "--stderr" => {
                options.unread_stderr = match value.as_str() {
                    "null" => false,
                    "unread-fifo" => true,
                    _ => return Err(format!("--stderr: {value:?} is not null or unread-fifo")),
                }
            }
            "--mode" => {
                options.mode = match value.as_str() {
                    "http1" => Mode::Http1,
                    "compare" => Mode::Compare,
                    "pooled" => Mode::Pooled,
                    "idle" => Mode::Idle,
                    "probation" => Mode::Probation,
                    "metrics" => Mode::Metrics,
                    "state" => Mode::State,
                    "tls" => Mode::Tls,
                    _ => {
                        return Err(format!(
                            "--mode: {value:?} is not http1, compare, pooled, idle, probation, metrics, state or tls"
                        ));
                    }
                }
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    // Pooled connections stay idle across a reload only if the reloads are spaced.
    options.interval = match (interval, options.mode) {
        (Some(interval), _) => interval,
        (None, Mode::Pooled) => Duration::from_secs(1),
        (None, _) => options.interval,
    };
    if matches!(
        options.mode,
        Mode::Compare
            | Mode::Pooled
            | Mode::Idle
            | Mode::Probation
            | Mode::Metrics
            | Mode::State
            | Mode::Tls
    ) {
        return Ok(options);
    }
    if !options.bin.is_file() {
        return Err(format!(
            "{} not found; build it first: cargo build --release -p littleboss-examples --example http",
            options.bin.display()
        ));
    }
    Ok(options)
}

/// Kills and reaps what the benchmark started, whatever happens.
struct Cleanup {
    children: Vec<Child>,
    pids: Arc<Mutex<Vec<u32>>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in self.pids.lock().map(|p| p.clone()).unwrap_or_default() {
            kill(pid);
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A FIFO at `path`, open for reading and writing (so that opening waits for no
/// peer), with a pipe of 4 KiB.
fn unread_fifo(path: &Path) -> Result<std::fs::File, String> {
    use rustix::fs::{FileType, Mode};
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::Fifo,
        Mode::RUSR | Mode::WUSR,
        0,
    )
    .map_err(|e| format!("mkfifo {}: {e}", path.display()))?;
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    rustix::pipe::fcntl_setpipe_size(&fifo, 4096).map_err(|e| format!("F_SETPIPE_SZ: {e}"))?;
    Ok(fifo)
}

fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

fn run(options: &Options) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let lb_dir = dir.path().join("lb");
    std::fs::create_dir(&lb_dir).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&lb_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let copies = [dir.path().join("http-a"), dir.path().join("http-b")];
    for copy in &copies {
        std::fs::copy(&options.bin, copy).map_err(|e| format!("copy: {e}"))?;
    }
    let command = |bin: &Path| {
        let mut command = Command::new(bin);
        command.env("LITTLEBOSS_DIR", &lb_dir);
        command
    };
    let mut cleanup = Cleanup {
        children: Vec::new(),
        pids: Arc::new(Mutex::new(Vec::new())),
    };

    // The supervised server; its stderr a pipe that nobody reads, if asked (held open
    // here until the end, never read).
    let fifo = match options.unread_stderr {
        true => Some(unread_fifo(&dir.path().join("stderr.fifo"))?),
        false => None,
    };
    let stderr = match &fifo {
        Some(fifo) => fifo
            .try_clone()
            .map(Stdio::from)
            .map_err(|e| format!("dup the FIFO: {e}"))?,
        None => Stdio::null(),
    };
    let supervisor = command(&copies[0])
        .args(["--littleboss=start", "--http=127.0.0.1:0"])
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("start: {e}"))?;
    let supervisor_pid = supervisor.id();
    cleanup.children.push(supervisor);
    let status = wait_status(&command, &copies[0], |s| s["state"] == "running")?;
    let supervised: SocketAddr = address(&status)?;
    remember_child(&cleanup, &status);
    // The baseline is taken once a reload cycle has run (a previous binary is held).
    let mut fds_before = settled_fd_count(supervisor_pid);
    let mut rss_before = vm_kib(supervisor_pid, "VmRSS");

    // The same binary bypassed, on a port of its own.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let bypass = command(&copies[1])
        .arg(format!("--http=127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("bypass: {e}"))?;
    cleanup.children.push(bypass);
    let bypassed: SocketAddr = format!("127.0.0.1:{port}").parse().map_err(|_| "addr")?;
    wait_until(Duration::from_secs(10), || get_fresh(bypassed).is_ok())
        .ok_or("the bypassed server does not answer")?;

    // Throughput, supervised and bypassed, in alternating slices.
    // Alternating slices, and the median of the per-pair ratios: a burst of noise on
    // this shared machine moves one pair, not the result.
    let (mut sup_requests, mut byp_requests) = (0u64, 0u64);
    let mut pair_ratios = Vec::new();
    for slice in 0..options.slices {
        // Which goes first alternates too: a slice leaves connections in TIME_WAIT that
        // slow the next one down.
        let (sup, byp) = if slice % 2 == 0 {
            let sup = throughput(supervised, options.threads, options.slice);
            (sup, throughput(bypassed, options.threads, options.slice))
        } else {
            let byp = throughput(bypassed, options.threads, options.slice);
            (throughput(supervised, options.threads, options.slice), byp)
        };
        pair_ratios.push(sup as f64 / byp.max(1) as f64);
        sup_requests += sup;
        byp_requests += byp;
    }
    let seconds = options.slice.as_secs_f64() * options.slices as f64;
    let sup_rps = sup_requests as f64 / seconds;
    let byp_rps = byp_requests as f64 / seconds;

    // Reloads under load.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for i in 0..options.threads * 2 {
        let stop = Arc::clone(&stop);
        let keep_alive = i % 2 == 1;
        let rate = options.rate;
        workers.push(std::thread::spawn(move || {
            load(supervised, keep_alive, rate, &stop, started)
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut windows = Vec::new();
    let mut reload_times = Vec::new();
    let mut failed_reloads = 0;
    let mut unexpected = Vec::new();
    let mut good = 0usize;
    for i in 0..options.reloads {
        let failing = i % 5 == 4;
        let bin = &copies[(good + 1) % 2];
        let before = status_of(&command, bin)?;
        let old_pid = before["child_pid"].as_u64().unwrap_or(0) as u32;
        let mut reload = command(bin);
        reload.arg("--littleboss=reload");
        if failing {
            reload.args(["--", "--refuse-to-start"]);
        }
        let t0 = Instant::now();
        let output = reload.output().map_err(|e| format!("reload: {e}"))?;
        let took = t0.elapsed();
        let ok = output.status.success();
        if ok == failing {
            unexpected.push(format!(
                "reload {i} ({}) exited {}: {}",
                if failing {
                    "meant to fail"
                } else {
                    "meant to succeed"
                },
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        if ok {
            good += 1;
            reload_times.push(took);
            let after = status_of(&command, bin)?;
            remember_child(&cleanup, &after);
            let new_pid = after["child_pid"].as_u64().unwrap_or(0) as u32;
            // The window lasts until the old process is gone.
            wait_until(Duration::from_secs(10), || {
                !Path::new(&format!("/proc/{old_pid}")).exists()
            });
            windows.push(Window {
                start: t0 - started,
                end: started.elapsed(),
                new_pid,
                served: None,
            });
        } else {
            failed_reloads += 1;
            windows.push(Window {
                start: t0 - started,
                end: started.elapsed(),
                new_pid: 0,
                served: None,
            });
        }
        if i == 4 {
            fds_before = settled_fd_count(supervisor_pid);
            rss_before = vm_kib(supervisor_pid, "VmRSS");
        }
        std::thread::sleep(options.interval);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    for worker in workers {
        let result = worker.join().map_err(|_| "a load thread panicked")?;
        samples.extend(result.samples);
        failures.extend(result.failures);
    }
    let rss = vm_kib(supervisor_pid, "VmRSS");
    let fds_after = settled_fd_count(supervisor_pid);
    let zombies = zombie_children(supervisor_pid).len();
    let final_status = status_of(&command, &copies[0])?;

    // When each new process answered first.
    for window in &mut windows {
        window.served = samples
            .iter()
            .filter(|s| s.pid == window.new_pid && s.at >= window.start)
            .map(|s| s.at)
            .min();
    }
    let in_window = |at: Duration| windows.iter().any(|w| at >= w.start && at <= w.end);
    let (mut inside, mut outside): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for s in &samples {
        if in_window(s.at) {
            inside.push(s.latency);
        } else {
            outside.push(s.latency);
        }
    }
    let serve_delays: Vec<Duration> = windows
        .iter()
        .filter_map(|w| w.served.map(|at| at.saturating_sub(w.start)))
        .collect();

    let pace = if options.rate == 0 {
        "as fast as they can".to_string()
    } else {
        format!("{} requests/s each", options.rate)
    };
    println!(
        "reload-bench: {} reloads ({} meant to fail), {} load threads ({} fresh-connection, {} keep-alive, {pace})",
        options.reloads,
        failed_reloads,
        options.threads * 2,
        options.threads,
        options.threads
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| requests | {} |", samples.len() + failures.len());
    println!("| failed requests | {} |", failures.len());
    println!(
        "| latency outside reloads p50 / p99 / max | {} |",
        percentiles(&mut outside)
    );
    println!(
        "| latency inside reload windows p50 / p99 / max | {} |",
        percentiles(&mut inside)
    );
    println!(
        "| reload command time median / max | {} |",
        median_max(&mut reload_times)
    );
    println!(
        "| reload request until the new process serves, median / max | {} |",
        median_max(&mut serve_delays.clone())
    );
    println!(
        "| failed reloads rolled back | {failed_reloads} (reloads {}, failures {}) |",
        final_status["reloads"], final_status["failures"]
    );
    let mib = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "| supervisor RSS after 5 reloads / at the end | {} / {} |",
        mib(rss_before),
        mib(rss)
    );
    println!(
        "| supervisor open fds after 5 reloads / at the end | {} / {} |",
        fds_before.map_or("?".into(), |n| n.to_string()),
        fds_after.map_or("?".into(), |n| n.to_string())
    );
    println!("| zombie children of the supervisor | {zombies} |");
    println!(
        "| requests/s supervised / bypass (median ratio of {} alternating pairs) | {sup_rps:.0} / {byp_rps:.0}, ratio {:.3} |",
        pair_ratios.len(),
        median(&mut pair_ratios)
    );
    for failure in failures.iter().take(10) {
        println!("failed: {failure}");
    }
    for problem in &unexpected {
        println!("unexpected: {problem}");
    }
    let stop = command(&copies[0]).arg("--littleboss=stop").output();
    if stop.map(|o| !o.status.success()).unwrap_or(true) {
        unexpected.push("stop did not exit 0".into());
        println!("unexpected: stop did not exit 0");
    }
    drop(cleanup);
    if zombies > 0 || fds_before != fds_after {
        unexpected.push(format!(
            "supervisor leaked: fds {fds_before:?} -> {fds_after:?}, {zombies} zombies"
        ));
        println!("unexpected: {}", unexpected[unexpected.len() - 1]);
    }
    if !failures.is_empty() || !unexpected.is_empty() {
        return Err("the run had failures (see above)".into());
    }
    Ok(())
}

struct Window {
    start: Duration,
    end: Duration,
    new_pid: u32,
    served: Option<Duration>,
}

struct Sample {
    at: Duration,
    latency: Duration,
    pid: u32,
}

struct LoadResult {
    samples: Vec<Sample>,
    failures: Vec<String>,
}

/// One load thread until `stop`: `rate` requests a second, or back to back if 0.
///
/// Paced requests are timed from when they were due, not from when they were sent, so
/// a stall shows in the latency of every request it delayed.
fn load(
    addr: SocketAddr,
    keep_alive: bool,
    rate: u64,
    stop: &AtomicBool,
    started: Instant,
) -> LoadResult {
    let mut result = LoadResult {
        samples: Vec::new(),
        failures: Vec::new(),
    };
    let mut conn: Option<BufReader<TcpStream>> = None;
    let period = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let t0 = match period {
            Some(period) => {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let t0 = due;
                due += period;
                t0
            }
            None => Instant::now(),
        };
        let outcome = if keep_alive {
            get_keep_alive(addr, &mut conn)
        } else {
            get_fresh(addr)
        };
        match outcome {
            Ok(pid) => result.samples.push(Sample {
                at: t0 - started,
                latency: t0.elapsed(),
                pid,
            }),
            Err(e) => {
                conn = None;
                result.failures.push(format!(
                    "at {:?} ({}): {e}",
                    t0 - started,
                    if keep_alive { "keep-alive" } else { "fresh" }
                ));
            }
        }
    }
    result
}

/// Requests per slice: fresh connections from `threads` threads.
fn throughput(addr: SocketAddr, threads: usize, slice: Duration) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || load(addr, false, 0, &stop, started))
        })
        .collect();
    std::thread::sleep(slice);
    stop.store(true, Ordering::SeqCst);
    workers
        .into_iter()
        .filter_map(|w| w.join().ok())
        .map(|r| r.samples.len() as u64)
        .sum()
}

fn get_fresh(addr: SocketAddr) -> Result<u32, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    let mut reader = BufReader::new(stream);
    request(&mut reader, true).map(|(pid, _)| pid)
}

fn get_keep_alive(
    addr: SocketAddr,
    conn: &mut Option<BufReader<TcpStream>>,
) -> Result<u32, String> {
    if conn.is_none() {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        *conn = Some(BufReader::new(stream));
    }
    let Some(reader) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let (pid, close) = request(reader, false)?;
    if close {
        *conn = None;
    }
    Ok(pid)
}

/// Sends `GET /` and reads one response: (the pid in the body, whether the server closes).
fn request(reader: &mut BufReader<TcpStream>, close: bool) -> Result<(u32, bool), String> {
    let stream = reader.get_mut();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let head = if close {
        "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    } else {
        "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    };
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("read status: {e}"))?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("status line {line:?}"));
    }
    let mut length = None;
    let mut server_closes = close;
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("read header: {e}"))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if lower == "connection: close" {
            server_closes = true;
        }
    }
    let length = length.ok_or("no content-length")?;
    let mut body = vec![0u8; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("read body: {e}"))?;
    let body = String::from_utf8_lossy(&body);
    let pid = body
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("body {body:?}"))?;
    Ok((pid, server_closes))
}

fn status_of(command: &dyn Fn(&Path) -> Command, bin: &Path) -> Result<serde_json::Value, String> {
    let output = command(bin)
        .arg("--littleboss=status-json")
        .output()
        .map_err(|e| format!("status: {e}"))?;
    serde_json::from_slice(&output.stdout).map_err(|e| format!("status-json: {e}"))
}

fn wait_status(
    command: &dyn Fn(&Path) -> Command,
    bin: &Path,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(status) = status_of(command, bin)
            && done(&status)
        {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err("the supervisor did not become ready".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn address(status: &serde_json::Value) -> Result<SocketAddr, String> {
    let shown = status["listeners"]["http"]
        .as_str()
        .ok_or("no http listener")?;
    shown
        .strip_prefix("tcp:")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("listener {shown}"))
}

fn remember_child(cleanup: &Cleanup, status: &serde_json::Value) {
    if let (Some(pid), Ok(mut pids)) = (status["child_pid"].as_u64(), cleanup.pids.lock()) {
        pids.push(pid as u32);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn percentiles(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!(
        "{} / {} / {}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(v[v.len() - 1])
    )
}

/// The supervisor's open fds once the work of the last command has settled: the least
/// of a few looks over 100 ms (a control connection whose answer the client has
/// already read may still be open for a moment).
fn settled_fd_count(pid: u32) -> Option<usize> {
    (0..20)
        .filter_map(|_| {
            std::thread::sleep(Duration::from_millis(5));
            fd_count(pid)
        })
        .min()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn median_max(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    format!("{} / {}", ms(v[v.len() / 2]), ms(v[v.len() - 1]))
}

/// A server of a `compare` or `pooled` column, supervised in a directory of its own
/// (its `LITTLEBOSS_DIR`, two copies of its binary to reload between, the supervisor's
/// log), and killed with all its children when dropped.
struct Served {
    dir: tempfile::TempDir,
    lb_dir: PathBuf,
    copies: [PathBuf; 2],
    cleanup: Cleanup,
    log: PathBuf,
}

/// The times of one reload of a [`Served`].
struct Reloaded {
    /// How long the reload command took.
    command: Duration,
    /// From the reload command until the old child had exited.
    old_gone: Duration,
    /// Whether the reload command succeeded.
    ok: bool,
}

/// How a [`Served`] is replaced: the child (`--littleboss=reload`), or the supervisor
/// and then the child (`--littleboss=upgrade`).
#[derive(Clone, Copy, Debug)]
enum Swap {
    Reload,
    Upgrade,
}

impl Served {
    /// The directory and the copies of `bin`; nothing runs yet.
    fn new(bin: &Path) -> Result<Served, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let lb_dir = dir.path().join("lb");
        std::fs::create_dir(&lb_dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&lb_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let copies = [dir.path().join("a"), dir.path().join("b")];
        for copy in &copies {
            std::fs::copy(bin, copy).map_err(|e| format!("copy: {e}"))?;
        }
        let log = dir.path().join("supervisor.log");
        Ok(Served {
            dir,
            lb_dir,
            copies,
            cleanup: Cleanup {
                children: Vec::new(),
                pids: Default::default(),
            },
            log,
        })
    }

    /// The directory, for files the server needs (certificates).
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command running `bin` with this server's `LITTLEBOSS_DIR`.
    fn command(&self, bin: &Path) -> Command {
        let mut command = Command::new(bin);
        command.env("LITTLEBOSS_DIR", &self.lb_dir);
        command
    }

    /// Starts the supervisor (`--littleboss=start --LISTENER=127.0.0.1:0 ARGS`, its
    /// stderr to the log), waits until it runs, and returns the listener's address.
    fn start(&mut self, listener: &str, args: &[OsString]) -> Result<SocketAddr, String> {
        let log_file = std::fs::File::create(&self.log).map_err(|e| e.to_string())?;
        let supervisor = self
            .command(&self.copies[0])
            .arg("--littleboss=start")
            .arg(format!("--{listener}=127.0.0.1:0"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("start: {e}"))?;
        self.cleanup.children.push(supervisor);
        let command = |bin: &Path| self.command(bin);
        let status = wait_status(&command, &self.copies[0], |s| s["state"] == "running")?;
        remember_child(&self.cleanup, &status);
        status["listeners"][listener]
            .as_str()
            .and_then(|a| a.strip_prefix("tcp:"))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| "no listener address".into())
    }

    /// [`start`](Self::start) for the `https` example: its listener `https`, with a new
    /// certificate for `localhost` (which a client trusts from the `Certs`).
    fn start_tls(&mut self) -> Result<(SocketAddr, Certs), String> {
        let certs = Certs::new(self.dir.path(), "localhost");
        let args = [
            "--cert".into(),
            certs.cert.clone().into(),
            "--key".into(),
            certs.key.clone().into(),
        ];
        let addr = self.start("https", &args)?;
        Ok((addr, certs))
    }

    /// Reload number `i` (to the other copy of the binary): `BIN --littleboss=reload`,
    /// then a wait (up to 10 s) until the child that served before it has exited.
    fn reload(&self, i: usize) -> Result<Reloaded, String> {
        self.swap(i, Swap::Reload)
    }

    /// The `i`th reload or upgrade, to the other copy of the binary.
    fn swap(&self, i: usize, by: Swap) -> Result<Reloaded, String> {
        let command = |bin: &Path| self.command(bin);
        let bin = &self.copies[(i + 1) % 2];
        let before = status_of(&command, bin)?;
        let old_pid = before["child_pid"].as_u64().unwrap_or(0) as u32;
        let t0 = Instant::now();
        let flag = match by {
            Swap::Reload => "--littleboss=reload",
            Swap::Upgrade => "--littleboss=upgrade",
        };
        let output = command(bin)
            .arg(flag)
            .output()
            .map_err(|e| format!("{flag}: {e}"))?;
        let took = t0.elapsed();
        let after = status_of(&command, bin)?;
        remember_child(&self.cleanup, &after);
        wait_until(Duration::from_secs(10), || {
            !Path::new(&format!("/proc/{old_pid}")).exists()
        });
        Ok(Reloaded {
            command: took,
            old_gone: t0.elapsed(),
            ok: output.status.success(),
        })
    }

    /// The pid of the child that serves now.
    fn child_pid(&self) -> Result<u32, String> {
        let command = |bin: &Path| self.command(bin);
        let status = status_of(&command, &self.copies[0])?;
        let pid = status["child_pid"].as_u64().ok_or("no child pid")?;
        Ok(pid as u32)
    }

    /// Stops the supervisor, kills what is left, and returns how many old children its
    /// log says were killed at the lameduck limit.
    fn stop(self) -> usize {
        let _ = self
            .command(&self.copies[0])
            .arg("--littleboss=stop")
            .output();
        let Served {
            dir, cleanup, log, ..
        } = self;
        drop(cleanup);
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        drop(dir);
        logs.lines()
            .filter(|l| l.contains("old child pid") && l.contains("was killed"))
            .count()
    }
}

/// `--mode compare`: see the crate documentation.
mod compare {
    use std::ffi::OsString;
    use std::path::Path;
    use std::time::Duration;

    use littleboss_tests::http_support::{Certs, Client, Load, Pattern, Report, Version, load};

    use super::{Options, Served, median_max, percentiles};

    /// One column of the table.
    struct Column {
        title: &'static str,
        bin: &'static str,
        tls: bool,
        workers: Vec<(Version, Pattern)>,
    }

    struct Measured {
        workers: String,
        report: Report,
        reload_times: Vec<Duration>,
        exits: Vec<Duration>,
        killed: usize,
        failed_reloads: usize,
    }

    pub(super) fn run(options: &Options) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = exe.parent().ok_or("no directory")?.to_path_buf();
        let threads = options.threads;
        let http1 = || {
            let mut w = vec![(Version::Http1, Pattern::Fresh); threads];
            w.extend(vec![(Version::Http1, Pattern::KeepAlive); threads]);
            w
        };
        let h2 = || vec![(Version::Http2, Pattern::Streams(8)); threads];
        let mut https = vec![(Version::Http1, Pattern::Fresh); threads / 2 + 1];
        https.extend(vec![(Version::Http1, Pattern::KeepAlive); threads / 2 + 1]);
        https.extend(vec![(Version::Http2, Pattern::Streams(8)); threads / 2 + 1]);
        let columns = [
            Column {
                title: "HTTP/1.1 helper",
                bin: "examples/axum",
                tls: false,
                workers: http1(),
            },
            Column {
                title: "HTTP/1.1 plain axum",
                bin: "lb-axum-plain",
                tls: false,
                workers: http1(),
            },
            Column {
                title: "h2c helper",
                bin: "examples/axum",
                tls: false,
                workers: h2(),
            },
            Column {
                title: "h2c plain axum",
                bin: "lb-axum-plain",
                tls: false,
                workers: h2(),
            },
            Column {
                title: "HTTPS helper",
                bin: "examples/https",
                tls: true,
                workers: https,
            },
        ];
        for column in &columns {
            let bin = dir.join(column.bin);
            if !bin.is_file() {
                return Err(format!(
                    "{} not found; build first: cargo build --release -p littleboss-examples --examples && cargo build --release -p littleboss-tests --bins",
                    bin.display()
                ));
            }
        }
        let mut results = Vec::new();
        for column in &columns {
            littleboss_tests::say!("reload-bench: {} ...", column.title);
            results.push(measure(options, &dir.join(column.bin), column)?);
        }
        let pace = Duration::from_millis(2);
        println!(
            "reload-bench --mode compare: {} reloads a server, {} ms between them; load paced at a request (or a round of 8 streams) every {} ms per worker",
            options.reloads,
            options.interval.as_millis(),
            pace.as_millis()
        );
        let mut header = "| measure |".to_string();
        let mut rule = "|---|".to_string();
        for column in &columns {
            header.push_str(&format!(" {} |", column.title));
            rule.push_str("---|");
        }
        println!("{header}\n{rule}");
        let row = |name: &str, cell: &dyn Fn(&Measured) -> String| {
            let mut line = format!("| {name} |");
            for m in &results {
                line.push_str(&format!(" {} |", cell(m)));
            }
            println!("{line}");
        };
        row("load workers", &|m| m.workers.clone());
        row("requests", &|m| {
            (m.report.answered + m.report.failures.len() as u64).to_string()
        });
        row("failed requests", &|m| {
            format!("**{}**", m.report.failures.len())
        });
        row("retried (never taken by the server)", &|m| {
            m.report.retried.to_string()
        });
        row("latency p50 / p99 / max", &|m| {
            let mut l: Vec<Duration> = m.report.samples.iter().map(|s| s.1).collect();
            percentiles(&mut l)
        });
        row("reload command median / max", &|m| {
            median_max(&mut m.reload_times.clone())
        });
        row("old process gone after its reload, median / max", &|m| {
            median_max(&mut m.exits.clone())
        });
        row("old processes killed at the lameduck limit", &|m| {
            m.killed.to_string()
        });
        row("failed reloads", &|m| m.failed_reloads.to_string());
        for (column, m) in columns.iter().zip(&results) {
            for failure in m.report.failures.iter().take(3) {
                println!("failed ({}): {failure}", column.title);
            }
        }
        Ok(())
    }

    fn measure(options: &Options, bin: &Path, column: &Column) -> Result<Measured, String> {
        let mut served = Served::new(bin)?;
        let certs = Certs::new(served.path(), "localhost");
        let listener = if column.tls { "https" } else { "http" };
        let mut tls_args: Vec<OsString> = Vec::new();
        if column.tls {
            tls_args.push("--cert".into());
            tls_args.push(certs.cert.clone().into());
            tls_args.push("--key".into());
            tls_args.push(certs.key.clone().into());
        }
        let addr = served.start(listener, &tls_args)?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let shared = Load::new(u64::MAX, Duration::from_millis(2));
        let handles: Vec<_> = column
            .workers
            .iter()
            .map(|(version, pattern)| {
                let client = if column.tls {
                    Client::tls(addr, *version, &certs)
                } else {
                    Client::plain(addr, *version)
                };
                runtime.spawn(load(client, *pattern, shared.clone()))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let mut reload_times = Vec::new();
        let mut exits = Vec::new();
        let mut failed_reloads = 0;
        for i in 0..options.reloads {
            let reload = served.reload(i)?;
            reload_times.push(reload.command);
            exits.push(reload.old_gone);
            if !reload.ok {
                failed_reloads += 1;
            }
            std::thread::sleep(options.interval);
        }
        shared.stop();
        let mut report = Report::default();
        for handle in handles {
            report.merge(runtime.block_on(handle).map_err(|e| e.to_string())?);
        }
        let killed = served.stop();
        let mut kinds: Vec<String> = Vec::new();
        for (version, pattern) in &column.workers {
            let kind = match (version, pattern) {
                (_, Pattern::Fresh) => "fresh".to_string(),
                (_, Pattern::KeepAlive) => "keep-alive".to_string(),
                (_, Pattern::Streams(n)) => format!("{n} streams"),
            };
            kinds.push(kind);
        }
        kinds.dedup();
        Ok(Measured {
            workers: format!("{} ({})", column.workers.len(), kinds.join(", ")),
            report,
            reload_times,
            exits,
            killed,
            failed_reloads,
        })
    }
}

/// `--mode pooled`: see the crate documentation.
mod pooled {
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use littleboss_tests::pool_support::{PoolReport, pooled, pooled_tls};

    use super::{Options, Served, Swap, median_max};

    /// One column of the table: a server, supervised.
    struct Column {
        title: &'static str,
        /// Its binary, in the directory of this one.
        bin: &'static str,
        /// How it is replaced each time.
        by: Swap,
        /// Whether it serves TLS (its listener `https`, a certificate made for it).
        tls: bool,
    }

    const COLUMNS: [Column; 6] = [
        Column {
            title: "`http` example (hands over)",
            bin: "examples/http",
            by: Swap::Reload,
            tls: false,
        },
        Column {
            title: "`http` example, `upgrade` each time",
            bin: "examples/http",
            by: Swap::Upgrade,
            tls: false,
        },
        Column {
            title: "`https` example (hands over, TLS)",
            bin: "examples/https",
            by: Swap::Reload,
            tls: true,
        },
        Column {
            title: "`axum` example (hands over)",
            bin: "examples/axum",
            by: Swap::Reload,
            tls: false,
        },
        Column {
            title: "lb-axum-drain (helper, closes)",
            bin: "lb-axum-drain",
            by: Swap::Reload,
            tls: false,
        },
        Column {
            title: "lb-axum-plain (plain axum::serve)",
            bin: "lb-axum-plain",
            by: Swap::Reload,
            tls: false,
        },
    ];

    struct Measured {
        report: PoolReport,
        reload_times: Vec<Duration>,
        exits: Vec<Duration>,
        killed: usize,
        failed_reloads: usize,
    }

    pub(super) fn run(options: &Options) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = exe.parent().ok_or("no directory")?.to_path_buf();
        for column in &COLUMNS {
            let bin = dir.join(column.bin);
            if !bin.is_file() {
                return Err(format!(
                    "{} not found; build first: cargo build --release -p littleboss-examples --examples && cargo build --release -p littleboss-tests --bins",
                    bin.display()
                ));
            }
        }
        let mut results = Vec::new();
        for column in &COLUMNS {
            littleboss_tests::say!("reload-bench: {} ...", column.title);
            results.push(measure(options, &dir.join(column.bin), column)?);
        }
        println!(
            "reload-bench --mode pooled: {} reloads a server, {} ms between them; {} pooled keep-alive clients, each pausing up to {} ms between two requests",
            options.reloads,
            options.interval.as_millis(),
            options.clients,
            options.max_pause.as_millis()
        );
        let mut header = "| measure |".to_string();
        let mut rule = "|---|".to_string();
        for column in &COLUMNS {
            header.push_str(&format!(" {} |", column.title));
            rule.push_str("---|");
        }
        println!("{header}\n{rule}");
        let row = |name: &str, cell: &dyn Fn(&Measured) -> String| {
            let mut line = format!("| {name} |");
            for m in &results {
                line.push_str(&format!(" {} |", cell(m)));
            }
            println!("{line}");
        };
        row("requests", &|m| m.report.requests.to_string());
        row("failed requests", &|m| format!("**{}**", m.report.failed));
        row(
            "of which sent as the server closed (keep-alive race)",
            &|m| m.report.raced.to_string(),
        );
        row("connections closed by the server", &|m| {
            m.report.closed_by_server.to_string()
        });
        row("`Connection: close` answers", &|m| {
            m.report.close_answers.to_string()
        });
        row("connections opened", &|m| m.report.opened.to_string());
        row("processes that answered", &|m| {
            m.report.pids.len().to_string()
        });
        row("reload command median / max", &|m| {
            median_max(&mut m.reload_times.clone())
        });
        row("old process gone after its reload, median / max", &|m| {
            median_max(&mut m.exits.clone())
        });
        row("old processes killed at the lameduck limit", &|m| {
            m.killed.to_string()
        });
        row("failed reloads", &|m| m.failed_reloads.to_string());
        for (column, m) in COLUMNS.iter().zip(&results) {
            for failure in m.report.failures.iter().take(3) {
                println!("failed ({}): {failure}", column.title);
            }
        }
        Ok(())
    }

    /// One column: the server started, its pooled clients connected and idle, then the
    /// reloads, then time for every client to come back once more.
    fn measure(options: &Options, bin: &Path, column: &Column) -> Result<Measured, String> {
        let by = column.by;
        let mut served = Served::new(bin)?;
        let stop = Arc::new(AtomicBool::new(false));
        let pool = if column.tls {
            let (addr, certs) = served.start_tls()?;
            let config = certs.client(&[b"http/1.1"]);
            pooled_tls(
                addr,
                config,
                options.clients,
                options.max_pause,
                Arc::clone(&stop),
            )
        } else {
            let addr = served.start("http", &[])?;
            pooled(addr, options.clients, options.max_pause, Arc::clone(&stop))
        };
        // Every client has sent its first request (each after a first pause of up to
        // `max_pause`), and pools its connection.
        let settle = options.max_pause + Duration::from_millis(500);
        std::thread::sleep(settle);
        let mut reload_times = Vec::new();
        let mut exits = Vec::new();
        let mut failed_reloads = 0;
        for i in 0..options.reloads {
            let reload = served.swap(i, by)?;
            reload_times.push(reload.command);
            exits.push(reload.old_gone);
            if !reload.ok {
                failed_reloads += 1;
            }
            std::thread::sleep(options.interval);
        }
        // Every client reuses (or finds closed) its connection once more after the last
        // reload.
        std::thread::sleep(settle);
        stop.store(true, Ordering::Relaxed);
        let report = pool.finish();
        let killed = served.stop();
        Ok(Measured {
            report,
            reload_times,
            exits,
            killed,
            failed_reloads,
        })
    }
}

/// `--mode idle`: see the crate documentation.
mod idle {
    use std::io::BufReader;
    use std::net::TcpStream;
    use std::os::fd::AsFd;
    use std::time::Duration;

    use super::{Served, Swap, ms, request};

    /// How many connections, through what.
    const RUNS: [(usize, Swap); 4] = [
        (100, Swap::Reload),
        (1_000, Swap::Reload),
        (10_000, Swap::Reload),
        (10_000, Swap::Upgrade),
    ];

    struct Measured {
        count: usize,
        by: Swap,
        old_gone: Duration,
        closed: usize,
        failed: usize,
        moved_to_new: usize,
    }

    pub(super) fn run(connections: Option<usize>) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let bin = exe.parent().ok_or("no directory")?.join("examples/http");
        if !bin.is_file() {
            return Err(format!(
                "{} not found; build first: cargo build --release -p littleboss-examples --examples",
                bin.display()
            ));
        }
        // Room for this process's end of every connection.
        littleboss_tests::raise_fd_limit();
        let mut results = Vec::new();
        let runs = match connections {
            Some(count) => vec![(count, Swap::Reload), (count, Swap::Upgrade)],
            None => RUNS.to_vec(),
        };
        for (count, by) in runs {
            littleboss_tests::say!("reload-bench: {count} idle connections, {by:?} ...");
            results.push(measure(&bin, count, by)?);
        }
        println!(
            "reload-bench --mode idle: the `http` example, idle keep-alive connections held through one reload (or upgrade)"
        );
        println!(
            "| idle connections | through | old process gone after the command | connections closed | then answered by the new process | failed |"
        );
        println!("|---|---|---|---|---|---|");
        for m in &results {
            let by = match m.by {
                Swap::Reload => "reload",
                Swap::Upgrade => "upgrade",
            };
            println!(
                "| {} | {by} | {} | **{}** | {} | **{}** |",
                m.count,
                ms(m.old_gone),
                m.closed,
                m.moved_to_new,
                m.failed
            );
        }
        Ok(())
    }

    /// Whether the connection is still open: nothing to read and no end of file.
    fn is_open(stream: &TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            rustix::net::recv(
                stream.as_fd(),
                &mut byte,
                rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
            ),
            Err(rustix::io::Errno::AGAIN)
        )
    }

    fn measure(bin: &std::path::Path, count: usize, by: Swap) -> Result<Measured, String> {
        let mut served = Served::new(bin)?;
        let addr = served.start("http", &[])?;
        let mut conns = Vec::with_capacity(count);
        let mut first = None;
        for _ in 0..count {
            let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            let mut reader = BufReader::new(stream);
            let (pid, _) = request(&mut reader, false)?;
            first.get_or_insert(pid);
            conns.push(reader);
        }
        let reload = served.swap(0, by)?;
        if !reload.ok {
            return Err(format!("the {by:?} failed"));
        }
        let closed = conns.iter().filter(|c| !is_open(c.get_ref())).count();
        let mut failed = 0;
        let mut moved_to_new = 0;
        for conn in &mut conns {
            if !is_open(conn.get_ref()) {
                continue;
            }
            match request(conn, false) {
                Ok((pid, _)) if Some(pid) != first => moved_to_new += 1,
                Ok(_) => {}
                Err(_) => failed += 1,
            }
        }
        drop(conns);
        served.stop();
        Ok(Measured {
            count,
            by,
            old_gone: reload.old_gone,
            closed,
            failed,
            moved_to_new,
        })
    }
}

/// `--mode probation`: see the crate documentation.
mod probation {
    use std::collections::HashSet;
    use std::io::{BufRead, BufReader, Read};
    use std::net::{SocketAddr, TcpStream};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use littleboss_tests::attack_support::vm_kib;
    use littleboss_tests::zombie_children;

    use super::{Options, Served, median_max, percentiles, request, status_of, wait_until};

    /// The probation of a new child meant to fail: it fails long before its end.
    const LONG_PROBATION: Duration = Duration::from_secs(30);
    /// The probation of a new child meant to pass: its time runs out.
    const SHORT_PROBATION: Duration = Duration::from_secs(2);
    /// When a new child meant to fail crashes or calls `unhealthy`, after it starts
    /// serving.
    const FAIL_AFTER: Duration = Duration::from_millis(500);
    /// When the RSS of both processes is read, after the reload command said that the
    /// new child is on probation.
    const RSS_AT: Duration = Duration::from_millis(250);
    /// From when the reload command said that the new child is on probation, the old
    /// child has stood by (answers in flight as it began to are done).
    const STANDING: Duration = Duration::from_millis(50);

    /// What the new child of a reload does on probation.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Kind {
        /// Exits with code 101 (`--crash-after-ms`).
        Crash,
        /// Calls `unhealthy` (`--unhealthy-after-ms`).
        Unhealthy,
        /// Nothing: its probation's time runs out.
        Pass,
    }

    const KINDS: [Kind; 3] = [Kind::Crash, Kind::Unhealthy, Kind::Pass];

    impl Kind {
        fn title(self) -> &'static str {
            match self {
                Kind::Crash => "new child crashes",
                Kind::Unhealthy => "new child calls unhealthy",
                Kind::Pass => "new child passes",
            }
        }

        /// The reload's arguments for the new child (after `--`).
        fn args(self) -> Vec<String> {
            let fail = FAIL_AFTER.as_millis();
            let probation = |d: Duration| format!("--probation-ms={}", d.as_millis());
            match self {
                Kind::Crash => vec![
                    probation(LONG_PROBATION),
                    format!("--crash-after-ms={fail}"),
                    "--print-times".into(),
                ],
                Kind::Unhealthy => vec![
                    probation(LONG_PROBATION),
                    format!("--unhealthy-after-ms={fail}"),
                    "--print-times".into(),
                ],
                Kind::Pass => vec![probation(SHORT_PROBATION)],
            }
        }

        /// The exit code the reload command must end with.
        fn code(self) -> i32 {
            match self {
                Kind::Crash | Kind::Unhealthy => 1,
                Kind::Pass => 0,
            }
        }
    }

    /// One reload, its times since the load began.
    struct Reload {
        kind: Kind,
        /// The reload command started.
        start: Duration,
        /// The reload command said that the new child is on probation.
        on_probation: Option<Duration>,
        /// The reload command exited.
        end: Duration,
        code: Option<i32>,
        old_pid: u32,
        new_pid: Option<u32>,
        /// The new child's exit as its pidfd told it (the crash kind).
        died: Option<Duration>,
        /// The RSS of the old and the new child during the probation, in KiB.
        rss: (Option<u64>, Option<u64>),
    }

    /// An answered request.
    struct Answer {
        /// When it was due (paced requests are timed from then).
        due: Duration,
        /// When its answer was read.
        done: Duration,
        pid: u32,
        /// The first request on its connection.
        new_connection: bool,
        keep_alive: bool,
        /// The answer said `Connection: close` (keep-alive requests only).
        close: bool,
    }

    /// A failed request.
    struct Failure {
        due: Duration,
        sent: Duration,
        failed: Duration,
        keep_alive: bool,
        /// The process that answered last on the connection; none on a new one.
        connection_pid: Option<u32>,
        error: String,
    }

    /// A keep-alive worker's connection and the process that answered on it last.
    type Connection = (BufReader<TcpStream>, Option<u32>);

    pub(super) fn run(options: &Options) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let bin = exe.parent().ok_or("no directory")?.join("lb-probation");
        if !bin.is_file() {
            return Err(format!(
                "{} not found; build first: cargo build --release -p littleboss-tests --bins",
                bin.display()
            ));
        }
        let mut served = Served::new(&bin)?;
        let addr = served.start("http", &[])?;
        let command = |bin: &Path| served.command(bin);
        let supervisor_pid = status_of(&command, &served.copies[0])?["supervisor_pid"]
            .as_u64()
            .unwrap_or(0) as u32;
        // New children's pidfds, read from a thread of this runtime.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;

        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let started_ns = monotonic_ns();
        let workers: Vec<_> = (0..options.threads * 2)
            .map(|i| {
                let stop = Arc::clone(&stop);
                let keep_alive = i % 2 == 1;
                let rate = options.rate;
                std::thread::spawn(move || load(addr, keep_alive, rate, &stop, started))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let mut reloads = Vec::new();
        let mut unexpected = Vec::new();
        let mut passed = 0;
        for i in 0..options.reloads {
            let kind = KINDS[i % KINDS.len()];
            let bin = &served.copies[(passed + 1) % 2];
            let reload = reload(&served, bin, kind, &runtime, started, &mut unexpected)?;
            let after = status_of(&command, bin)?;
            let serving = after["child_pid"].as_u64().unwrap_or(0) as u32;
            // The process that winds down: the rolled-back new child, or the old one.
            let (meant, winding) = match kind {
                Kind::Crash => (reload.old_pid, None),
                Kind::Unhealthy => (reload.old_pid, reload.new_pid),
                Kind::Pass => (reload.new_pid.unwrap_or(0), Some(reload.old_pid)),
            };
            if serving != meant || after["state"] != "running" {
                unexpected.push(format!(
                    "reload {i} ({}): pid {serving} serves, state {}, not pid {meant} running",
                    kind.title(),
                    after["state"]
                ));
            }
            if let Some(pid) = winding
                && wait_until(Duration::from_secs(10), || !alive(pid)).is_none()
            {
                unexpected.push(format!("reload {i}: pid {pid} still runs after 10 s"));
            }
            if kind == Kind::Pass && reload.code == Some(0) {
                passed += 1;
            }
            reloads.push(reload);
            std::thread::sleep(options.interval);
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let (mut answers, mut failures) = (Vec::new(), Vec::new());
        for worker in workers {
            let (a, f) = worker.join().map_err(|_| "a load thread panicked")?;
            answers.extend(a);
            failures.extend(f);
        }
        let final_status = status_of(&command, &served.copies[0])?;
        let zombies = zombie_children(supervisor_pid).len();
        let log = std::fs::read_to_string(&served.log).map_err(|e| e.to_string())?;
        let mut seen: Vec<u32> = reloads.iter().filter_map(|r| r.new_pid).collect();
        seen.extend(reloads.iter().map(|r| r.old_pid));
        seen.push(supervisor_pid);
        served.stop();
        let left: Vec<u32> = seen.into_iter().filter(|pid| alive(*pid)).collect();
        if !left.is_empty() || zombies > 0 {
            unexpected.push(format!(
                "left running after the stop: {left:?}; zombie children before it: {zombies}"
            ));
        }

        let said = |pid: u32, what: &str| -> Option<Duration> {
            let head = format!("lb-probation: pid {pid} {what} at ");
            let ns: u128 = log
                .lines()
                .find_map(|l| l.strip_prefix(&head))?
                .trim()
                .parse()
                .ok()?;
            Some(Duration::from_nanos(
                u64::try_from(ns.checked_sub(started_ns)?).ok()?,
            ))
        };
        let measured: Vec<Measured> = reloads
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let next = reloads.get(i + 1).map_or(Duration::MAX, |n| n.start);
                let new = r.new_pid.unwrap_or(0);
                let (event, said_exit) = match r.kind {
                    Kind::Crash => (r.died, said(new, "exits with code 101")),
                    Kind::Unhealthy => (said(new, "unhealthy"), None),
                    Kind::Pass => (None, None),
                };
                let moved = match r.kind {
                    Kind::Crash => None,
                    Kind::Unhealthy => moved_in(&log, new),
                    Kind::Pass => moved_in(&log, r.old_pid),
                };
                Measured {
                    window: (r.start, next),
                    event,
                    said_exit,
                    moved,
                }
            })
            .collect();
        for (i, (r, m)) in reloads.iter().zip(&measured).enumerate() {
            if r.kind != Kind::Pass && m.event.is_none() {
                unexpected.push(format!(
                    "reload {i} ({}): no time for the new child's {}",
                    r.kind.title(),
                    if r.kind == Kind::Crash {
                        "exit"
                    } else {
                        "unhealthy call"
                    }
                ));
            }
        }
        // A request fails expectedly if it was sent on a connection the crashed process
        // answered last, or was in flight as it died: sent before its pidfd said so,
        // failed after it said it exits.
        let crashed: HashSet<u32> = reloads
            .iter()
            .filter(|r| r.kind == Kind::Crash)
            .filter_map(|r| r.new_pid)
            .collect();
        let crashes: Vec<(Duration, Duration)> = reloads
            .iter()
            .zip(&measured)
            .filter(|(r, _)| r.kind == Kind::Crash)
            .filter_map(|(_, m)| {
                let died = m.event?;
                Some((m.said_exit.unwrap_or(died).min(died), died))
            })
            .collect();
        let on_crashed = |f: &Failure| {
            f.connection_pid.is_some_and(|pid| crashed.contains(&pid))
                || crashes
                    .iter()
                    .any(|(said, died)| f.sent <= *died && f.failed >= *said)
        };

        let table = Table {
            options,
            reloads: &reloads,
            measured: &measured,
            answers: &mut answers,
            failures: &failures,
            on_crashed: &on_crashed,
        };
        table.print(&final_status);
        for f in failures.iter().filter(|f| !on_crashed(f)).take(10) {
            println!(
                "failed (not on a crashed process): due {:?}, sent {:?}, failed {:?} ({}, connection last answered by {:?}): {}",
                f.due,
                f.sent,
                f.failed,
                if f.keep_alive { "keep-alive" } else { "fresh" },
                f.connection_pid,
                f.error
            );
        }
        for problem in &unexpected {
            println!("unexpected: {problem}");
        }
        if failures.iter().any(|f| !on_crashed(f)) || !unexpected.is_empty() {
            return Err("the run had failures (see above)".into());
        }
        Ok(())
    }

    /// What the supervisor's log and the children's lines tell of a reload.
    struct Measured {
        /// From the reload's start until the next reload's.
        window: (Duration, Duration),
        /// The crash (by the new child's pidfd) or the unhealthy call (as the new child
        /// said).
        event: Option<Duration>,
        /// The crash, as the new child said it exits (just before).
        said_exit: Option<Duration>,
        /// The connections the process that wound down moved to the other one.
        moved: Option<u64>,
    }

    /// One reload of `kind`, by `bin --littleboss=reload -- ARGS`: the command's output
    /// read as it comes, the new child's pid from its `on probation` line, the RSS of
    /// both children a moment later, and the crash as the new child's pidfd tells it.
    fn reload(
        served: &Served,
        bin: &Path,
        kind: Kind,
        runtime: &tokio::runtime::Runtime,
        started: Instant,
        unexpected: &mut Vec<String>,
    ) -> Result<Reload, String> {
        let command = |bin: &Path| served.command(bin);
        let old_pid = status_of(&command, bin)?["child_pid"].as_u64().unwrap_or(0) as u32;
        let mut reload: Command = served.command(bin);
        reload
            .arg("--littleboss=reload")
            .arg("--")
            .args(kind.args())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let mut child = reload.spawn().map_err(|e| format!("reload: {e}"))?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut printed = String::new();
        let new_pid = loop {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break None,
                Ok(_) => {}
            }
            printed.push_str(&line);
            if let Some(pid) = on_probation(&line) {
                break Some(pid);
            }
        };
        let said_at = Instant::now();
        if let (Some(pid), Ok(mut pids)) = (new_pid, served.cleanup.pids.lock()) {
            pids.push(pid);
        }
        let death = match (kind, new_pid) {
            (Kind::Crash, Some(pid)) => Some(runtime.spawn(exit_of(pid))),
            _ => None,
        };
        std::thread::sleep(RSS_AT.saturating_sub(said_at.elapsed()));
        let rss = (
            vm_kib(old_pid, "VmRSS"),
            new_pid.and_then(|pid| vm_kib(pid, "VmRSS")),
        );
        let output = child
            .wait_with_output()
            .map_err(|e| format!("reload: {e}"))?;
        let end = started.elapsed();
        let _ = stdout.read_to_string(&mut printed);
        let died = match death {
            Some(death) => match runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), death).await })
            {
                Ok(Ok(Ok(at))) => Some(at - started),
                Ok(Ok(Err(e))) => {
                    unexpected.push(e);
                    None
                }
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => {
                    unexpected.push("a crashing new child still runs after 10 s".into());
                    None
                }
            },
            None => None,
        };
        let code = output.status.code();
        if code != Some(kind.code()) || new_pid.is_none() {
            unexpected.push(format!(
                "reload ({}) exited {}: {}{}",
                kind.title(),
                output.status,
                printed.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Reload {
            kind,
            start: t0 - started,
            on_probation: new_pid.map(|_| said_at - started),
            end,
            code,
            old_pid,
            new_pid,
            died,
            rss,
        })
    }

    /// The new child's pid in `reloaded NAME: pid OLD -> NEW in N ms; on probation
    /// for T`.
    fn on_probation(line: &str) -> Option<u32> {
        if !line.contains("; on probation for ") {
            return None;
        }
        let (_, after) = line.split_once(" -> ")?;
        after.split_whitespace().next()?.parse().ok()
    }

    /// When process `pid` exits, as its pidfd tells it.
    async fn exit_of(pid: u32) -> Result<Instant, String> {
        use rustix::process::{Pid, PidfdFlags, pidfd_open};
        use tokio::io::Interest;
        use tokio::io::unix::AsyncFd;

        let raw = Pid::from_raw(pid as i32).ok_or("pid 0")?;
        let fd =
            pidfd_open(raw, PidfdFlags::empty()).map_err(|e| format!("pidfd_open {pid}: {e}"))?;
        // SAFETY: an `OwnedFd` is open for as long as it lives and always returns the
        // same fd number, and the `AsyncFd` owns it until dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| format!("pidfd of {pid}: {e}"))?;
        let _ready = fd
            .readable()
            .await
            .map_err(|e| format!("pidfd of {pid}: {e}"))?;
        Ok(Instant::now())
    }

    /// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of `Instant`, and of the times
    /// `lb-probation --print-times` prints.
    fn monotonic_ns() -> u128 {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128
    }

    /// Whether process `pid` still runs (a zombie does not).
    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, after) = stat.rsplit_once(") ")?;
                after.chars().next()
            })
            .is_some_and(|state| state != 'Z')
    }

    /// From the supervisor's log, `old child pid PID exited ...; N connections moved to
    /// the new child`: N, or 0 if it moved none.
    fn moved_in(log: &str, pid: u32) -> Option<u64> {
        let head = format!("old child pid {pid} ");
        let line = log.lines().find(|l| l.contains(&head))?;
        let Some((_, tail)) = line.rsplit_once("; ") else {
            return Some(0);
        };
        tail.strip_suffix(" connections moved to the new child")
            .or_else(|| tail.strip_suffix(" connection moved to the new child"))
            .map_or(Some(0), |n| n.parse().ok())
    }

    /// One load thread until `stop`, as in `--mode http1` (`rate` requests a second, or
    /// back to back if 0), recording which process answered on which connection.
    fn load(
        addr: SocketAddr,
        keep_alive: bool,
        rate: u64,
        stop: &AtomicBool,
        started: Instant,
    ) -> (Vec<Answer>, Vec<Failure>) {
        let (mut answers, mut failures) = (Vec::new(), Vec::new());
        let mut conn: Option<Connection> = None;
        let period = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
        let mut due = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let t0 = match period {
                Some(period) => {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let t0 = due;
                    due += period;
                    t0
                }
                None => Instant::now(),
            };
            let sent = started.elapsed();
            let connection_pid = conn.as_ref().and_then(|c| c.1);
            let new_connection = !keep_alive || conn.is_none();
            match one(addr, keep_alive, &mut conn) {
                Ok((pid, close)) => answers.push(Answer {
                    due: t0 - started,
                    done: started.elapsed(),
                    pid,
                    new_connection,
                    keep_alive,
                    close: keep_alive && close,
                }),
                Err(error) => {
                    conn = None;
                    failures.push(Failure {
                        due: t0 - started,
                        sent,
                        failed: started.elapsed(),
                        keep_alive,
                        connection_pid,
                        error,
                    });
                }
            }
        }
        (answers, failures)
    }

    /// One request, on a new connection or the kept-alive one: (the pid that
    /// answered, whether the server closes).
    fn one(
        addr: SocketAddr,
        keep_alive: bool,
        conn: &mut Option<Connection>,
    ) -> Result<(u32, bool), String> {
        if conn.is_none() {
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
            *conn = Some((BufReader::new(stream), None));
        }
        let Some((reader, last)) = conn.as_mut() else {
            return Err("no connection".into());
        };
        let (pid, close) = request(reader, !keep_alive)?;
        *last = Some(pid);
        if close {
            *conn = None;
        }
        Ok((pid, close))
    }

    /// The measures, per kind of reload and overall.
    struct Table<'a> {
        options: &'a Options,
        reloads: &'a [Reload],
        measured: &'a [Measured],
        answers: &'a mut Vec<Answer>,
        failures: &'a [Failure],
        on_crashed: &'a dyn Fn(&Failure) -> bool,
    }

    impl Table<'_> {
        fn print(self, final_status: &serde_json::Value) {
            let Table {
                options,
                reloads,
                measured,
                answers,
                failures,
                on_crashed,
            } = self;
            answers.sort_by_key(|a| a.done);
            let answers: &[Answer] = answers;
            let count = |kind: Kind| reloads.iter().filter(|r| r.kind == kind).count();
            let pace = if options.rate == 0 {
                "as fast as they can".to_string()
            } else {
                format!("{} requests/s each", options.rate)
            };
            println!(
                "reload-bench --mode probation: {} reloads of lb-probation ({} crash, {} unhealthy, {} pass), {} ms between them; {} load threads ({} fresh-connection, {} keep-alive, {pace}); a failing new child crashes or calls unhealthy {} ms after it starts serving, on a probation of {} s; a passing one's probation is {} s",
                reloads.len(),
                count(Kind::Crash),
                count(Kind::Unhealthy),
                count(Kind::Pass),
                options.interval.as_millis(),
                options.threads * 2,
                options.threads,
                options.threads,
                FAIL_AFTER.as_millis(),
                LONG_PROBATION.as_secs(),
                SHORT_PROBATION.as_secs()
            );
            // Columns: each kind, then all (`None`), with requests from the start of
            // the load.
            let columns: [Option<Kind>; 4] = [
                Some(Kind::Crash),
                Some(Kind::Unhealthy),
                Some(Kind::Pass),
                None,
            ];
            let mut header = "| measure |".to_string();
            let mut rule = "|---|".to_string();
            for column in &columns {
                header.push_str(&format!(" {} |", column.map_or("all", Kind::title)));
                rule.push_str("---|");
            }
            println!("{header}\n{rule}");
            let of = |column: Option<Kind>| {
                reloads
                    .iter()
                    .zip(measured)
                    .filter(move |(r, _)| column.is_none_or(|k| r.kind == k))
            };
            // Whether a request due at `due` belongs to the column.
            let within = |column: Option<Kind>, due: Duration| {
                column.is_none() || of(column).any(|(_, m)| due >= m.window.0 && due < m.window.1)
            };
            let row = |name: &str, cell: &dyn Fn(Option<Kind>) -> String| {
                let mut line = format!("| {name} |");
                for column in columns {
                    line.push_str(&format!(" {} |", cell(column)));
                }
                println!("{line}");
            };
            let answered =
                |column: Option<Kind>| answers.iter().filter(move |a| within(column, a.due));
            let failed =
                |column: Option<Kind>| failures.iter().filter(move |f| within(column, f.due));
            row("reloads", &|c| of(c).count().to_string());
            row("requests", &|c| {
                (answered(c).count() + failed(c).count()).to_string()
            });
            row(
                "failed requests on the crashed process's connections (keep-alive, fresh)",
                &|c| {
                    let (keep_alive, fresh): (Vec<&Failure>, Vec<&Failure>) = failed(c)
                        .filter(|f| on_crashed(f))
                        .partition(|f| f.keep_alive);
                    format!(
                        "{} ({}, {})",
                        keep_alive.len() + fresh.len(),
                        keep_alive.len(),
                        fresh.len()
                    )
                },
            );
            row("failed requests, others", &|c| {
                format!("**{}**", failed(c).filter(|f| !on_crashed(f)).count())
            });
            row("latency p50 / p99 / max", &|c| {
                let mut l: Vec<Duration> = answered(c).map(|a| a.done - a.due).collect();
                percentiles(&mut l)
            });
            row("keep-alive connections opened", &|c| {
                let answered = answered(c).filter(|a| a.keep_alive && a.new_connection);
                let failed = failed(c).filter(|f| f.keep_alive && f.connection_pid.is_none());
                (answered.count() + failed.count()).to_string()
            });
            row(
                "`Connection: close` answers on keep-alive connections",
                &|c| answered(c).filter(|a| a.close).count().to_string(),
            );
            row("reload command until `on probation`, median / max", &|c| {
                let mut v: Vec<Duration> = of(c)
                    .filter_map(|(r, _)| r.on_probation.map(|at| at - r.start))
                    .collect();
                median_max(&mut v)
            });
            row(
                "answers by the old process standing by (50 ms after `on probation` until the crash, the unhealthy call or the verdict)",
                &|c| {
                    of(c)
                        .map(|(r, m)| {
                            let Some(from) = r.on_probation.map(|at| at + STANDING) else {
                                return 0;
                            };
                            let until = m.event.unwrap_or(r.end);
                            answers
                                .iter()
                                .filter(|a| a.pid == r.old_pid && a.done >= from && a.done < until)
                                .count()
                        })
                        .sum::<usize>()
                        .to_string()
                },
            );
            row(
                "crash (pidfd) or unhealthy call until the old process answers a new connection, median / max",
                &|c| {
                    let mut v: Vec<Duration> = of(c)
                        .filter_map(|(r, m)| {
                            let event = m.event?;
                            let first = answers.iter().find(|a| {
                                a.done >= event && a.pid == r.old_pid && a.new_connection
                            })?;
                            Some(first.done - event)
                        })
                        .collect();
                    median_max(&mut v)
                },
            );
            row(
                "crash (pidfd) or unhealthy call until the reload command exited, median / max",
                &|c| {
                    let mut v: Vec<Duration> = of(c)
                        .filter_map(|(r, m)| r.end.checked_sub(m.event?))
                        .collect();
                    median_max(&mut v)
                },
            );
            row(
                "connections moved (supervisor's log): unhealthy, back by the rolled-back child; pass, by the old child over all its stand-bys; total (min / max per reload)",
                &|c| {
                    let moved: Vec<u64> = of(c).filter_map(|(_, m)| m.moved).collect();
                    match (moved.iter().min(), moved.iter().max()) {
                        (Some(min), Some(max)) => {
                            format!("{} ({min} / {max})", moved.iter().sum::<u64>())
                        }
                        _ => "-".into(),
                    }
                },
            );
            row("reload command exit codes", &|c| {
                let mut codes: Vec<(Option<i32>, usize)> = Vec::new();
                for (r, _) in of(c) {
                    match codes.iter_mut().find(|(code, _)| *code == r.code) {
                        Some((_, n)) => *n += 1,
                        None => codes.push((r.code, 1)),
                    }
                }
                codes.sort();
                let shown: Vec<String> = codes
                    .iter()
                    .map(|(code, n)| {
                        let code = code.map_or("signal".into(), |c| c.to_string());
                        format!("{code} ×{n}")
                    })
                    .collect();
                shown.join(", ")
            });
            let mib = |mut v: Vec<u64>| {
                v.sort();
                v.get(v.len() / 2)
                    .map_or("-".into(), |k| format!("{:.1} MiB", *k as f64 / 1024.0))
            };
            row(
                "RSS during the probation, old / new process (median)",
                &|c| {
                    let old = of(c).filter_map(|(r, _)| r.rss.0).collect();
                    let new = of(c).filter_map(|(r, _)| r.rss.1).collect();
                    format!("{} / {}", mib(old), mib(new))
                },
            );
            row(
                "supervisor's count at the end: reloads / failures",
                &|c| match c {
                    Some(_) => "-".into(),
                    None => format!("{} / {}", final_status["reloads"], final_status["failures"]),
                },
            );
        }
    }
}

/// `--mode metrics`: see the crate documentation.
mod metrics {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use super::{Cleanup, Options, remember_child, status_of, throughput, wait_status};

    /// How often the scraper asks for `/metrics`.
    const SCRAPE_EVERY: Duration = Duration::from_millis(100);

    /// The supervisor's private memory in KiB (`Private_Clean` + `Private_Dirty` of
    /// `/proc/PID/smaps_rollup`): what it alone holds.
    pub(super) fn private_kib(pid: u32) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some(field("Private_Clean:")? + field("Private_Dirty:")?)
    }

    /// `GET /metrics` once; the body's length.
    fn scrape(addr: SocketAddr) -> Result<usize, String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        if !answer.starts_with(b"HTTP/1.1 200") {
            return Err(format!("{:?}", String::from_utf8_lossy(&answer)));
        }
        Ok(answer.len())
    }

    fn listener(status: &serde_json::Value, name: &str) -> Result<SocketAddr, String> {
        let shown = status["listeners"][name].as_str().ok_or("no listener")?;
        (shown.strip_prefix("tcp:"))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("listener {shown}"))
    }

    pub(super) fn run(options: &Options) -> Result<(), String> {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("no workspace")?
            .join("target/release/lb-metrics");
        if !bin.is_file() {
            return Err(format!(
                "{} not found; build it first: cargo build --release -p littleboss-tests --bins",
                bin.display()
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let lb_dir = dir.path().join("lb");
        std::fs::create_dir(&lb_dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&lb_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let command = |bin: &Path| {
            let mut command = Command::new(bin);
            command.env("LITTLEBOSS_DIR", &lb_dir);
            command
        };
        let mut cleanup = Cleanup {
            children: Vec::new(),
            pids: Arc::default(),
        };
        let supervisor = command(&bin)
            .args([
                "--littleboss=start",
                "--http=127.0.0.1:0",
                "--metrics=127.0.0.1:0",
            ])
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start: {e}"))?;
        let pid = supervisor.id();
        cleanup.children.push(supervisor);
        let status = wait_status(&command, &bin, |s| s["state"] == "running")?;
        remember_child(&cleanup, &status);
        let http = listener(&status, "http")?;
        let metrics = listener(&status, "metrics")?;
        let body = scrape(metrics)?;

        // Throughput with a scraper and without, in alternating slices (which goes
        // first alternates too), and the median of the per-pair ratios.
        let mut ratios = Vec::new();
        let (mut with_total, mut without_total) = (0u64, 0u64);
        let scrapes = Arc::new(AtomicU64::new(0));
        for slice in 0..options.slices {
            let scraped = || {
                let stop = Arc::new(AtomicBool::new(false));
                let scraper = {
                    let (stop, scrapes) = (Arc::clone(&stop), Arc::clone(&scrapes));
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::SeqCst) {
                            let began = Instant::now();
                            if scrape(metrics).is_ok() {
                                scrapes.fetch_add(1, Ordering::Relaxed);
                            }
                            std::thread::sleep(SCRAPE_EVERY.saturating_sub(began.elapsed()));
                        }
                    })
                };
                let n = throughput(http, options.threads, options.slice);
                stop.store(true, Ordering::SeqCst);
                let _ = scraper.join();
                n
            };
            let (with, without) = if slice % 2 == 0 {
                let with = scraped();
                (with, throughput(http, options.threads, options.slice))
            } else {
                let without = throughput(http, options.threads, options.slice);
                (scraped(), without)
            };
            ratios.push(with as f64 / without.max(1) as f64);
            with_total += with;
            without_total += without;
        }
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        let seconds = options.slice.as_secs_f64() * options.slices as f64;

        // The supervisor's private memory with the journal empty (no event yet), then
        // full (more reloads than it keeps).
        let empty = private_kib(pid);
        let reloads = super::JOURNAL_FULL;
        let began = Instant::now();
        for i in 0..reloads {
            let output = command(&bin)
                .arg("--littleboss=reload")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("reload: {e}"))?;
            if !output.success() {
                return Err(format!("reload {i} failed"));
            }
        }
        let reloading = began.elapsed();
        let status = status_of(&command, &bin)?;
        remember_child(&cleanup, &status);
        let history = command(&bin)
            .arg("--littleboss=history-json")
            .output()
            .map_err(|e| format!("history: {e}"))?;
        let history: serde_json::Value =
            serde_json::from_slice(&history.stdout).map_err(|e| format!("history-json: {e}"))?;
        let kept = history["events"].as_array().map_or(0, Vec::len);
        let omitted = history["omitted"].as_u64().unwrap_or(0);
        // Let the retired children's exits settle.
        std::thread::sleep(Duration::from_millis(500));
        let full = private_kib(pid);

        println!(
            "reload-bench --mode metrics: lb-metrics (HTTP helpers) supervised, {} threads of fresh-connection requests, {} slices of {} ms with a scraper polling GET /metrics every {} ms and {} without, alternating",
            options.threads,
            options.slices,
            options.slice.as_millis(),
            SCRAPE_EVERY.as_millis(),
            options.slices
        );
        println!("| | value |");
        println!("|---|---|");
        println!(
            "| requests/s with the scraper | {:.0} |",
            with_total as f64 / seconds
        );
        println!(
            "| requests/s without | {:.0} |",
            without_total as f64 / seconds
        );
        println!(
            "| throughput ratio (median of {} pairs) | {median:.3} |",
            ratios.len()
        );
        println!(
            "| scrapes answered | {} ({} bytes each at first) |",
            scrapes.load(Ordering::Relaxed),
            body
        );
        let shown = |kib: Option<u64>| kib.map_or("-".to_string(), |k| format!("{k} KiB"));
        println!(
            "| supervisor private memory, journal empty | {} |",
            shown(empty)
        );
        println!(
            "| supervisor private memory, journal full ({kept} events kept, {omitted} left out of the reply; {reloads} reloads in {:.1} s) | {} |",
            reloading.as_secs_f64(),
            shown(full)
        );
        if let (Some(empty), Some(full)) = (empty, full) {
            println!("| difference | {} KiB |", full as i64 - empty as i64);
        }
        drop(cleanup);
        Ok(())
    }
}

mod state {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::metrics::private_kib;
    use super::{Cleanup, Options, median, remember_child, status_of, wait_status};

    /// The sizes measured, and how many reloads each.
    const SIZES: [(u64, usize); 4] = [(0, 5), (1 << 20, 5), (64 << 20, 5), (1 << 30, 3)];

    /// Named fds in each state (none in the baseline).
    const FDS: usize = 100;

    /// Writing `len` bytes into a memfd and reading them once, the least of three.
    fn floor(len: usize) -> Result<Duration, String> {
        let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let began = Instant::now();
            let fd = rustix::fs::memfd_create("floor", rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(|e| e.to_string())?;
            let mut file = std::fs::File::from(fd);
            file.write_all(&bytes).map_err(|e| e.to_string())?;
            let mut back = vec![0u8; len];
            file.read_exact_at(&mut back, 0)
                .map_err(|e| e.to_string())?;
            let sum: u64 = back.iter().map(|b| u64::from(*b)).sum();
            std::hint::black_box(sum);
            best = best.min(began.elapsed());
        }
        Ok(best)
    }

    /// The `in A us, read in R us` of the line of the process `pid` that took a state.
    fn took(log: &Path, pid: u32) -> Option<(Duration, Duration)> {
        let text = std::fs::read_to_string(log).ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("lb-state: pid {pid} took ")))?;
        let (_, times) = line.rsplit_once(" in ")?;
        let (_, ask) = line.rsplit_once(" from ")?;
        let ask_us: u64 = ask.split_whitespace().nth(2)?.parse().ok()?;
        let read_us: u64 = times.split_whitespace().next()?.parse().ok()?;
        Some((
            Duration::from_micros(ask_us),
            Duration::from_micros(read_us),
        ))
    }

    pub(super) fn run(options: &Options) -> Result<(), String> {
        let _ = options;
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("no workspace")?
            .join("target/release/lb-state");
        if !bin.is_file() {
            return Err(format!(
                "{} not found; build it first: cargo build --release -p littleboss-tests --bins",
                bin.display()
            ));
        }
        println!(
            "reload-bench --mode state: lb-state supervised, reloaded with a state of each size and {FDS} named fds, and with none"
        );
        println!(
            "| state | reload (median) | ask to having it (median) | reading it once (median) | floor: memfd write + read | moving / floor | supervisor private memory before / after |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (size, reloads) in SIZES {
            // First: it touches as much memory as the state will, so that the first
            // reload does not pay for the machine's first touch of it (on a virtual
            // machine, a page the guest never used costs a fault in the host: a 1 GiB
            // memfd written for the first time took 3 s here, and 0.3 s after).
            let floor_ms = if size > 0 {
                Some(floor(size as usize)?.as_secs_f64() * 1000.0)
            } else {
                None
            };
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let lb_dir = dir.path().join("lb");
            std::fs::create_dir(&lb_dir).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&lb_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(|e| e.to_string())?;
            let log = dir.path().join("stderr");
            let command = |bin: &Path| {
                let mut command = Command::new(bin);
                command.env("LITTLEBOSS_DIR", &lb_dir);
                command
            };
            let mut cleanup = Cleanup {
                children: Vec::new(),
                pids: Arc::default(),
            };
            let mut args = vec![
                "--littleboss=start".to_string(),
                "--http=127.0.0.1:0".to_string(),
            ];
            if size == 0 {
                args.extend(["--no-offer".to_string(), "--bytes=0".to_string()]);
            } else {
                args.push(format!("--bytes={size}"));
                args.push(format!("--fds={FDS}"));
            }
            let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
            let supervisor = command(&bin)
                .args(&args)
                .stderr(Stdio::from(stderr))
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("start: {e}"))?;
            let pid = supervisor.id();
            cleanup.children.push(supervisor);
            let status = wait_status(&command, &bin, |s| s["state"] == "running")?;
            remember_child(&cleanup, &status);
            let before = private_kib(pid);
            let (mut reload_ms, mut ask_ms, mut read_ms) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..reloads {
                let began = Instant::now();
                let output = command(&bin)
                    .arg("--littleboss=reload")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map_err(|e| format!("reload: {e}"))?;
                let took_reload = began.elapsed();
                if !output.success() {
                    return Err(format!("reload {i} of {size} bytes failed"));
                }
                let status = status_of(&command, &bin)?;
                remember_child(&cleanup, &status);
                reload_ms.push(took_reload.as_secs_f64() * 1000.0);
                if size > 0 {
                    let child = status["child_pid"].as_u64().unwrap_or(0) as u32;
                    let (ask, read) =
                        super::wait_until(Duration::from_secs(30), || took(&log, child).is_some())
                            .and_then(|()| took(&log, child))
                            .ok_or_else(|| format!("pid {child} said nothing of its state"))?;
                    ask_ms.push(ask.as_secs_f64() * 1000.0);
                    read_ms.push(read.as_secs_f64() * 1000.0);
                }
                // The old process winds down before the next reload.
                std::thread::sleep(Duration::from_millis(500));
            }
            let after = private_kib(pid);
            let shown = |v: &mut Vec<f64>| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.1} ms", median(v))
                }
            };
            let (floor_ms, ratio) = match floor_ms {
                Some(floor) => {
                    let moving = median(&mut ask_ms) + median(&mut read_ms);
                    (format!("{floor:.1} ms"), format!("{:.2}", moving / floor))
                }
                None => ("-".to_string(), "-".to_string()),
            };
            let what = match size {
                0 => "none (offers nothing)".to_string(),
                s if s >= 1 << 30 => format!("{} GiB + {FDS} fds", s >> 30),
                s => format!("{} MiB + {FDS} fds", s >> 20),
            };
            let kib = |k: Option<u64>| k.map_or("-".to_string(), |k| format!("{k} KiB"));
            println!(
                "| {what} | {} | {} | {} | {floor_ms} | {ratio} | {} / {} |",
                shown(&mut reload_ms),
                shown(&mut ask_ms),
                shown(&mut read_ms),
                kib(before),
                kib(after)
            );
            drop(cleanup);
        }
        Ok(())
    }
}

/// `--mode tls`: see the crate documentation.
mod tls_cost {
    use std::time::{Duration, Instant};

    use littleboss_tests::http_support::{Client, Connection, Outcome, Version};

    use super::{Options, Served, ms};

    /// The CPU time process `pid` has used, all its threads: the sum of the first
    /// field of each thread's `/proc/PID/task/TID/schedstat` (nanoseconds).
    fn cpu(pid: u32) -> Result<Duration, String> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
        let mut ns = 0u64;
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += stat
                .split(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(Duration::from_nanos(ns))
    }

    /// `GET /` on each of `conns`, each timed; every answer must come from `pid`.
    async fn get_all(conns: &mut [Connection], pid: u32) -> Result<Vec<Duration>, String> {
        let mut times = Vec::new();
        for conn in conns.iter_mut() {
            let t0 = Instant::now();
            match conn.get("/", false).await {
                Outcome::Answered {
                    pid: by,
                    close: false,
                } if by == pid => {}
                other => return Err(format!("{other:?} where pid {pid} was to answer")),
            }
            times.push(t0.elapsed());
        }
        Ok(times)
    }

    pub(super) fn run(options: &Options) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let bin = exe.parent().ok_or("no directory")?.join("examples/https");
        if !bin.is_file() {
            return Err(format!(
                "{} not found; build first: cargo build --release -p littleboss-examples --examples",
                bin.display()
            ));
        }
        let n = options.clients;
        let mut served = Served::new(&bin)?;
        let (addr, certs) = served.start_tls()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = Client::tls(addr, Version::Http1, &certs);
        runtime.block_on(async {
            // The baseline: a new process with no connection, once its old one is gone.
            served.reload(0)?;
            let idle_child = served.child_pid()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let baseline = cpu(idle_child)?;
            // n connections, handshaken and answered once, idle; then a reload moves
            // them.
            let mut conns = Vec::new();
            for _ in 0..n {
                conns.push(client.connect().await.map_err(|e| e.to_string())?);
            }
            get_all(&mut conns, idle_child).await?;
            let reloaded = served.reload(1)?;
            let moved_to = served.child_pid()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let adopted = cpu(moved_to)?;
            let mut moved_first = get_all(&mut conns, moved_to).await?;
            let served_moved = cpu(moved_to)?;
            drop(conns);
            // The same n as fresh connections to a new process.
            served.reload(2)?;
            let fresh_child = served.child_pid()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let fresh_baseline = cpu(fresh_child)?;
            let mut fresh_first = Vec::new();
            let mut fresh = Vec::new();
            for _ in 0..n {
                let t0 = Instant::now();
                let mut conn = client.connect().await.map_err(|e| e.to_string())?;
                match conn.get("/", false).await {
                    Outcome::Answered { pid, .. } if pid == fresh_child => {}
                    other => return Err(format!("{other:?}")),
                }
                fresh_first.push(t0.elapsed());
                fresh.push(conn);
            }
            let served_fresh = cpu(fresh_child)?;
            drop(fresh);
            let per = |d: Duration| format!("{} µs", (d / n as u32).as_micros());
            let requests = served_moved.saturating_sub(adopted);
            println!(
                "reload-bench --mode tls: {n} TLS 1.3 connections (rustls clients and their default suites, an ECDSA P-256 certificate, HTTP/1.1) to the `https` example"
            );
            println!("| on the new process's side | per connection |");
            println!("|---|---|");
            println!(
                "| CPU to take a moved session (the adoption, above a new process's own start) | {} |",
                per(adopted.saturating_sub(baseline))
            );
            println!(
                "| CPU to accept a fresh connection and its handshake (less a request's) | {} |",
                per(served_fresh.saturating_sub(fresh_baseline).saturating_sub(requests))
            );
            println!("| CPU of one request, for scale | {} |", per(requests));
            println!("| the client's first request, median: on a moved connection | {} |", median(&mut moved_first));
            println!(
                "| the client's first request, median: connect, handshake and request | {} |",
                median(&mut fresh_first)
            );
            println!(
                "| the reload that moved them: old process gone after | {} |",
                ms(reloaded.old_gone)
            );
            Ok::<(), String>(())
        })?;
        served.stop();
        Ok(())
    }

    fn median(v: &mut [Duration]) -> String {
        v.sort();
        v.get(v.len() / 2).map_or("-".into(), |d| ms(*d))
    }
}
