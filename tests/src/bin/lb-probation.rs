//! `lb-probation`: a server on `littleboss::http` that declares a probation, for the
//! tests of probation (service `lbprob`, or `--name=NAME`).
//!
//! It serves its `http` listener (default `tcp:127.0.0.1:0`, lameduck 2 s) with the
//! HTTP helpers, which stand by and resume by themselves, and answers every request
//! with `pid PID exe EXE mode MODE\n`, as `lb-http` does. What it declares comes from
//! its arguments, read before `run` (a reload passes new ones after `--`):
//!
//! | switch | effect |
//! |---|---|
//! | `--name=NAME` | the service name (default `lbprob`) |
//! | `--probation-ms=N` | `.probation(N ms)` (default none) |
//! | `--no-standby` | `.standby(false)` |
//! | `--probation-5xx=N` | `.probation_5xx(N)` |
//! | `--status=N` | answer every request with status N |
//! | `--crash-after-ms=N` | exit with code 101, N ms after it is ready |
//! | `--unhealthy-after-ms=N` | call `unhealthy("told to")` N ms after it is ready |
//! | `--own-loop` | serve with an accept loop of its own that cannot stand by |
//! | `--print-times` | say when it calls `unhealthy` or exits with code 101 (below) |
//! | `--cert=PATH --key=PATH` | serve TLS with this certificate chain and key |
//!
//! `GET /slow/MS` is answered after MS milliseconds (it prints `lb-probation: pid PID
//! slow MS` when it comes). It prints `lb-probation: pid PID standing by`, `...
//! resumed` and `... lameduck` on stderr as they come. With `--print-times`, also `lb-probation: pid PID unhealthy at
//! NS` just after it called `unhealthy`, and `lb-probation: pid PID exits with code 101
//! at NS` just before it exits, NS being `CLOCK_MONOTONIC` in nanoseconds read just
//! before the call or the exit (the clock of `std::time::Instant`), for `reload-bench
//! --mode probation`.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use littleboss::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the arguments ask for.
#[derive(Debug, Default)]
struct Opts {
    name: Option<String>,
    probation_ms: Option<u64>,
    no_standby: bool,
    probation_5xx: Option<u8>,
    status: Option<u16>,
    crash_after_ms: Option<u64>,
    unhealthy_after_ms: Option<u64>,
    own_loop: bool,
    print_times: bool,
    cert: Option<String>,
    key: Option<String>,
}

impl Opts {
    /// From the command line: the switches above, anything else (littleboss's flags)
    /// left alone.
    fn parse() -> Result<Opts, String> {
        let mut opts = Opts::default();
        for arg in std::env::args().skip(1) {
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg.as_str(), None),
            };
            let number = || -> Result<u64, String> {
                value
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{name} needs a number: {arg}"))
            };
            match name {
                "--name" => opts.name = value.map(str::to_string),
                "--probation-ms" => opts.probation_ms = Some(number()?),
                "--no-standby" => opts.no_standby = true,
                "--probation-5xx" => {
                    opts.probation_5xx = Some(u8::try_from(number()?).map_err(|e| e.to_string())?);
                }
                "--status" => {
                    opts.status = Some(u16::try_from(number()?).map_err(|e| e.to_string())?)
                }
                "--crash-after-ms" => opts.crash_after_ms = Some(number()?),
                "--unhealthy-after-ms" => opts.unhealthy_after_ms = Some(number()?),
                "--own-loop" => opts.own_loop = true,
                "--print-times" => opts.print_times = true,
                "--cert" => opts.cert = value.map(str::to_string),
                "--key" => opts.key = value.map(str::to_string),
                _ => {}
            }
        }
        Ok(opts)
    }
}

fn main() -> std::process::ExitCode {
    let opts = match Opts::parse() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("lb-probation: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let name = opts.name.clone().unwrap_or_else(|| "lbprob".to_string());
    let mut lb = littleboss::Littleboss::new(&name)
        .listener("http", "tcp:127.0.0.1:0")
        .calls_ready(true)
        .lameduck(Duration::from_secs(2));
    if let Some(ms) = opts.probation_ms {
        lb = lb.probation(Duration::from_millis(ms));
    }
    if opts.no_standby {
        lb = lb.standby(false);
    }
    if let Some(pct) = opts.probation_5xx {
        lb = lb.probation_5xx(pct);
    }
    lb.run(|lb| serve(lb, opts))
}

async fn serve(lb: Context, opts: Opts) -> Result<(), Box<dyn std::error::Error>> {
    let pid = std::process::id();
    let watch = lb.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                // Lameduck first: a child that passed its stand-by is still standing.
                biased;
                () = watch.lameduck() => {
                    littleboss_tests::say!("lb-probation: pid {pid} lameduck");
                    return;
                }
                () = watch.standby() => {
                    littleboss_tests::say!("lb-probation: pid {pid} standing by");
                    tokio::select! {
                        () = watch.lameduck() => {}
                        () = watch.resumed() => {
                            littleboss_tests::say!("lb-probation: pid {pid} resumed");
                        }
                    }
                }
            }
        }
    });
    let after_ready = |ms: Option<u64>, what: fn(&Context, bool)| {
        if let Some(ms) = ms {
            let lb = lb.clone();
            let print_times = opts.print_times;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                what(&lb, print_times);
            });
        }
    };
    after_ready(opts.crash_after_ms, |_, print_times| {
        if print_times {
            let at = monotonic_ns();
            littleboss_tests::say!(
                "lb-probation: pid {} exits with code 101 at {at}",
                std::process::id()
            );
        }
        std::process::exit(101)
    });
    after_ready(opts.unhealthy_after_ms, |lb, print_times| {
        let at = monotonic_ns();
        lb.unhealthy("told to");
        if print_times {
            littleboss_tests::say!("lb-probation: pid {} unhealthy at {at}", std::process::id());
        }
    });
    let status = opts.status.unwrap_or(200);
    if opts.own_loop {
        return own_loop(&lb, status).await;
    }
    let service = hyper::service::service_fn(move |request: Request<Incoming>| async move {
        let slow = request.uri().path().strip_prefix("/slow/");
        if let Some(ms) = slow.and_then(|ms| ms.parse::<u64>().ok()) {
            littleboss_tests::say!("lb-probation: pid {} slow {ms}", std::process::id());
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let mut response = Response::new(Full::new(Bytes::from(answer())));
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        Ok::<_, Infallible>(response)
    });
    let mut server = littleboss::http::Server::new();
    if let (Some(cert), Some(key)) = (&opts.cert, &opts.key) {
        server = server.tls(littleboss::http::Tls::from_pem_files(cert, key)?);
    }
    server.serve(&lb, "http", service).await?;
    Ok(())
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
fn monotonic_ns() -> u128 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128
}

/// `pid PID exe EXE mode MODE\n`.
fn answer() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    format!(
        "pid {} exe {} mode supervised\n",
        std::process::id(),
        exe.display()
    )
}

/// An accept loop that does not declare it can stand by: each connection gets one
/// answer, with `Connection: close`.
async fn own_loop(lb: &Context, status: u16) -> Result<(), Box<dyn std::error::Error>> {
    let listener = lb.tcp_listener("http")?;
    lb.ready();
    loop {
        tokio::select! {
            () = lb.lameduck() => return Ok(()),
            accepted = listener.accept() => {
                let (mut stream, _) = accepted?;
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let body = answer();
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
                });
            }
        }
    }
}
