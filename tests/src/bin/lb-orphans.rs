//! `lb-orphans`: a program whose children leave orphans behind (service
//! `lbsdorphans`), to check that a supervisor running as PID 1 reaps them.
//!
//! At start, the program (bypassed or supervised) makes `--orphans=N` orphans (default
//! 0): for each it runs a copy of itself as an *intermediate* process, which starts a
//! *grandchild* (another copy) and exits at once, without waiting for it; the program
//! waits for the intermediate, so the grandchild is left without a parent and the
//! kernel reparents it to the nearest init (the supervisor, as PID 1 of a pid
//! namespace). A grandchild exits once the file given by `--release=PATH` exists, or
//! after `--linger-ms=N` (default 100) without `--release`.
//!
//! It then prints `lb-orphans: pid PID made N orphans` on stderr and serves its
//! `http` listener (default `tcp:127.0.0.1:0`) as `lb-unix` does: one line
//! `pid PID exe EXE mode MODE\n` per connection. It calls `lb.ready()` and returns at
//! lameduck.
//!
//! The copies are told their role by the variable `LB_SD_ORPHANS_ROLE` (`intermediate`
//! or `grandchild`), read before littleboss runs, so that they never start littleboss.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use littleboss::{Context, Littleboss};
use littleboss_tests::serve::{greeting, serve_lines, take_http};
use littleboss_tests::switches;

const ROLE: &str = "LB_SD_ORPHANS_ROLE";
const RELEASE: &str = "LB_SD_ORPHANS_RELEASE";
const LINGER: &str = "LB_SD_ORPHANS_LINGER_MS";

/// How long a grandchild waits for its release file at most.
const MAX_WAIT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    match std::env::var(ROLE).as_deref() {
        Ok("intermediate") => return intermediate(),
        Ok("grandchild") => return grandchild(),
        _ => {}
    }
    Littleboss::new("lbsdorphans")
        .listener("http", "tcp:127.0.0.1:0")
        .calls_ready(true)
        .run(serve)
}

/// Starts a grandchild and exits at once, leaving it an orphan.
fn intermediate() -> ExitCode {
    let spawned = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .env(ROLE, "grandchild")
            .stdin(Stdio::null())
            .spawn()
    });
    match spawned {
        // Not waited for: that is the point.
        Ok(child) => {
            littleboss_tests::say!("lb-orphans: intermediate started grandchild {}", child.id());
            ExitCode::SUCCESS
        }
        Err(e) => {
            littleboss_tests::say!("lb-orphans: intermediate cannot start a grandchild: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for the release file (or lingers), then exits.
fn grandchild() -> ExitCode {
    let release = std::env::var_os(RELEASE).map(PathBuf::from);
    let linger = std::env::var(LINGER)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_millis(100), Duration::from_millis);
    let started = Instant::now();
    match release {
        Some(path) => {
            while !path.exists() && started.elapsed() < MAX_WAIT {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        None => std::thread::sleep(linger),
    }
    ExitCode::SUCCESS
}

/// The switches of the program itself.
#[derive(Debug, Default)]
struct Opts {
    orphans: usize,
    release: Option<String>,
    linger_ms: Option<String>,
}

fn parse(args: Vec<std::ffi::OsString>) -> Result<Opts, String> {
    let mut opts = Opts::default();
    for arg in switches(args) {
        let arg = arg?;
        match arg.split_once('=') {
            Some(("--orphans", n)) => {
                opts.orphans = n.parse().map_err(|e| format!("{arg}: {e}"))?;
            }
            Some(("--release", path)) => opts.release = Some(path.to_string()),
            Some(("--linger-ms", ms)) => opts.linger_ms = Some(ms.to_string()),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(opts)
}

async fn serve(lb: Context) -> std::io::Result<()> {
    let pid = std::process::id();
    let opts = match parse(lb.args()) {
        Ok(opts) => opts,
        Err(e) => {
            littleboss_tests::say!("lb-orphans: {e}");
            std::process::exit(2);
        }
    };
    let exe = std::env::current_exe()?;
    for _ in 0..opts.orphans {
        let mut command = Command::new(&exe);
        command.env(ROLE, "intermediate").stdin(Stdio::null());
        if let Some(release) = &opts.release {
            command.env(RELEASE, release);
        }
        if let Some(ms) = &opts.linger_ms {
            command.env(LINGER, ms);
        }
        // Waits for the intermediate (and reaps it): only the grandchild is orphaned.
        let status = command.status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!("intermediate: {status}")));
        }
    }
    littleboss_tests::say!("lb-orphans: pid {pid} made {} orphans", opts.orphans);
    let line = greeting(&lb)?;
    let listener = take_http(&lb, "lb-orphans")?;
    lb.ready();
    serve_lines(listener, lb.lameduck(), "lb-orphans: accept", line).await;
    littleboss_tests::say!("lb-orphans: pid {pid} wound down");
    Ok(())
}
