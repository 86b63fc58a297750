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
//! | `--panic-at-start` | panic at once (exit code 101), before taking listeners |
//! | `--take-listener=NAME` | take listener NAME first, returning its error from main |
//! | `--never-ready` | never call `lb.ready()` |
//! | `--crash-after-ms=N` | exit with code 4, N ms after start, whatever it is doing |
//! | `--ignore-lameduck` | keep serving after lameduck and never return |
//! | `--take-spare` | also take and serve the `spare` listener |
//! | `--slow-ms=N` | wait N ms before answering each request |
//! | `--take-state` | before ready, take the state of the process it replaces and say what came: `lb-http: pid PID took no state`, `took a state of N bytes`, or `take_state failed: ERROR` |
//!
//! (The switch is `--take-spare`, not `--spare`: littleboss owns `--spare`, the flag of
//! the `spare` listener, and would take the next argument as its address.)

use std::io;
use std::sync::Arc;
use std::time::Duration;

use littleboss::Context;
use littleboss_tests::serve::{self, accept_until, answer_once, finish};
use littleboss_tests::switches;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The behaviour switches.
#[derive(Debug, Default)]
struct Opts {
    exit_code: i32,
    exit_at_start: bool,
    panic_at_start: bool,
    take_listener: Option<String>,
    never_ready: bool,
    crash_after_ms: Option<u64>,
    ignore_lameduck: bool,
    take_spare: bool,
    slow_ms: u64,
    take_state: bool,
}

impl Opts {
    /// Parses the program's arguments (program name first); an unknown one is an error,
    /// so that a typo in a test fails loudly.
    fn parse(args: Vec<std::ffi::OsString>) -> Result<Opts, String> {
        let mut opts = Opts::default();
        for arg in switches(args) {
            let arg = arg?;
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
                "--panic-at-start" => opts.panic_at_start = true,
                "--take-listener" => opts.take_listener = value.map(str::to_string),
                "--never-ready" => opts.never_ready = true,
                "--crash-after-ms" => opts.crash_after_ms = Some(number(value)?),
                "--ignore-lameduck" => opts.ignore_lameduck = true,
                "--take-spare" => opts.take_spare = true,
                "--slow-ms" => opts.slow_ms = number(value)?,
                "--take-state" => opts.take_state = true,
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
            littleboss_tests::say!("lb-http: {e}");
            std::process::exit(2);
        }
    };
    if opts.exit_at_start {
        littleboss_tests::say!("lb-http: pid {pid} exiting at start with code 3");
        std::process::exit(3);
    }
    if opts.panic_at_start {
        panic!("lb-http: told to panic at start");
    }
    if let Some(name) = &opts.take_listener {
        lb.tcp_listener(name)?;
    }
    if opts.take_state {
        match lb.take_state().await {
            Ok(None) => littleboss_tests::say!("lb-http: pid {pid} took no state"),
            Ok(Some(state)) => littleboss_tests::say!(
                "lb-http: pid {pid} took a state of {} bytes",
                state.bytes().len()
            ),
            Err(e) => littleboss_tests::say!("lb-http: pid {pid} take_state failed: {e}"),
        }
    }
    if let Some(ms) = opts.crash_after_ms {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            littleboss_tests::say!("lb-http: pid {pid} crashing with code 4 after {ms} ms");
            std::process::exit(4);
        });
    }
    let response: Arc<str> = serve::response("text/plain", &serve::greeting(&lb)?, true).into();

    let mut names = vec!["http"];
    if opts.take_spare {
        names.push("spare");
    }
    let mut servers = JoinSet::new();
    for name in names {
        match lb.tcp_listener(name) {
            Ok(listener) => {
                let addr = listener.local_addr()?;
                littleboss_tests::say!("lb-http: pid {pid} serving {name} on {addr}");
                servers.spawn(serve(
                    listener,
                    lb.clone(),
                    Arc::clone(&opts),
                    Arc::clone(&response),
                ));
            }
            Err(e) => littleboss_tests::say!("lb-http: pid {pid} cannot take {name}: {e}"),
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
    littleboss_tests::say!(
        "lb-http: pid {pid} wound down; exiting with code {}",
        opts.exit_code
    );
    if opts.exit_code != 0 {
        std::process::exit(opts.exit_code);
    }
    Ok(())
}

/// Answers the requests on `listener` with `response` until lameduck (or forever, with
/// `--ignore-lameduck`), then finishes the connections it has.
async fn serve(listener: TcpListener, lb: Context, opts: Arc<Opts>, response: Arc<str>) {
    let delay = Duration::from_millis(opts.slow_ms);
    let until = async move {
        if opts.ignore_lameduck {
            std::future::pending::<()>().await;
        }
        lb.lameduck().await;
    };
    let connections = accept_until(listener, until, "lb-http: accept", |stream| {
        answer_once(stream, Arc::clone(&response), delay)
    })
    .await;
    finish(connections).await;
}
