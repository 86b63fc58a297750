//! `lb-http`: the littleboss test server (service `lbhttp`).
//!
//! A minimal hand-written HTTP/1.1 server: every request on any connection it serves is
//! answered with `pid PID exe EXE mode MODE\n` and `Connection: close`. It takes the
//! `http` listener (default `tcp:127.0.0.1:0`), and with `--take-spare` also the `spare`
//! listener (declared off: give it an address with `--spare=ADDR`). For each listener it
//! serves it prints `lb-http: pid PID serving NAME on ADDR` on stderr (the tests read
//! the port of a bypassed process from that line); a listener it cannot take is reported
//! as `lb-http: pid PID cannot take NAME: ERROR` and the program goes on without it.
//!
//! It calls `lb.ready()` once it serves. On `lb.lameduck()` it stops accepting (drops its
//! listeners: the sockets are shared with the supervisor, never shut down), finishes the
//! connections it has, and returns.
//!
//! Behaviour switches, read from `lb.args()` so that a reload can pass new ones:
//!
//! | switch | effect |
//! |---|---|
//! | `--exit-code=N` | after winding down, exit with code N instead of 0 |
//! | `--exit-at-start` | exit with code 3 at once, before taking listeners or calling ready |
//! | `--never-ready` | never call `lb.ready()` |
//! | `--crash-after-ms=N` | exit with code 4, N ms after start, whatever it is doing |
//! | `--ignore-lameduck` | keep serving after lameduck and never return |
//! | `--take-spare` | also take and serve the `spare` listener |
//! | `--slow-ms=N` | wait N ms before answering each request |
//!
//! (The switch is `--take-spare`, not `--spare`: littleboss owns `--spare`, the flag of
//! the `spare` listener, and would take the next argument as its address.)

use std::io;
use std::sync::Arc;
use std::time::Duration;

use littleboss::{Context, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How long a client may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head read.
const MAX_HEAD: usize = 64 * 1024;

/// The behaviour switches.
#[derive(Debug, Default)]
struct Opts {
    exit_code: i32,
    exit_at_start: bool,
    never_ready: bool,
    crash_after_ms: Option<u64>,
    ignore_lameduck: bool,
    take_spare: bool,
    slow_ms: u64,
}

impl Opts {
    /// Parses the program's arguments (program name first); an unknown one is an error,
    /// so that a typo in a test fails loudly.
    fn parse(args: Vec<std::ffi::OsString>) -> Result<Opts, String> {
        let mut opts = Opts::default();
        for arg in args.into_iter().skip(1) {
            let arg = arg
                .into_string()
                .map_err(|a| format!("argument {a:?} is not UTF-8"))?;
            if arg == "--" {
                // `start ... -- ARGS` passes the `--` on; the switches after it are ours.
                continue;
            }
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg.as_str(), None),
            };
            let number = |value: Option<&str>| -> Result<u64, String> {
                value
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{name} needs a number: {arg}"))
            };
            match name {
                "--exit-code" => {
                    opts.exit_code = i32::try_from(number(value)?).map_err(|e| e.to_string())?;
                }
                "--exit-at-start" => opts.exit_at_start = true,
                "--never-ready" => opts.never_ready = true,
                "--crash-after-ms" => opts.crash_after_ms = Some(number(value)?),
                "--ignore-lameduck" => opts.ignore_lameduck = true,
                "--take-spare" => opts.take_spare = true,
                "--slow-ms" => opts.slow_ms = number(value)?,
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        Ok(opts)
    }
}

#[littleboss::main(
    name = "lbhttp",
    listener(http = "tcp:127.0.0.1:0", spare = "tcp:"),
    calls_ready = true,
    lameduck = "2s"
)]
async fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    let opts = match Opts::parse(lb.args()) {
        Ok(opts) => Arc::new(opts),
        Err(e) => {
            eprintln!("lb-http: {e}");
            std::process::exit(2);
        }
    };
    if opts.exit_at_start {
        eprintln!("lb-http: pid {pid} exiting at start with code 3");
        std::process::exit(3);
    }
    if let Some(ms) = opts.crash_after_ms {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            eprintln!("lb-http: pid {pid} crashing with code 4 after {ms} ms");
            std::process::exit(4);
        });
    }
    let mode = match lb.mode() {
        Mode::Bypass => "bypass",
        Mode::Supervised => "supervised",
    };
    let exe = std::env::current_exe()?;
    let greeting: Arc<str> = format!("pid {pid} exe {} mode {mode}\n", exe.display()).into();

    let mut names = vec!["http"];
    if opts.take_spare {
        names.push("spare");
    }
    let mut servers = JoinSet::new();
    for name in names {
        match lb.tcp_listener(name) {
            Ok(listener) => {
                let addr = listener.local_addr()?;
                eprintln!("lb-http: pid {pid} serving {name} on {addr}");
                servers.spawn(serve(
                    listener,
                    lb.clone(),
                    Arc::clone(&opts),
                    Arc::clone(&greeting),
                ));
            }
            Err(e) => eprintln!("lb-http: pid {pid} cannot take {name}: {e}"),
        }
    }
    if !opts.never_ready {
        lb.ready();
    }
    if opts.ignore_lameduck {
        std::future::pending::<()>().await;
    }
    if servers.is_empty() {
        lb.lameduck().await;
    }
    while servers.join_next().await.is_some() {}
    eprintln!(
        "lb-http: pid {pid} wound down; exiting with code {}",
        opts.exit_code
    );
    if opts.exit_code != 0 {
        std::process::exit(opts.exit_code);
    }
    Ok(())
}

/// Accepts on `listener` until lameduck, then finishes the connections it has.
async fn serve(listener: TcpListener, lb: Context, opts: Arc<Opts>, greeting: Arc<str>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = lb.lameduck(), if !opts.ignore_lameduck => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(answer(stream, opts.slow_ms, Arc::clone(&greeting)));
                }
                Err(e) => {
                    // Out of fds, most likely: back off instead of spinning.
                    eprintln!("lb-http: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Stop accepting: close this process's copy of the socket (a new process may be
    // accepting from the same socket).
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Reads one request head and answers it; errors only end the connection.
async fn answer(mut stream: TcpStream, slow_ms: u64, greeting: Arc<str>) {
    let read = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await;
    if !matches!(read, Ok(Ok(true))) {
        return;
    }
    if slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(slow_ms)).await;
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{greeting}",
        greeting.len()
    );
    if stream.write_all(response.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Reads until the end of the request head: `Ok(true)` once `\r\n\r\n` arrived,
/// `Ok(false)` if the client closed first or sent too much.
async fn read_head(stream: &mut TcpStream) -> io::Result<bool> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(false);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(true);
        }
    }
}
