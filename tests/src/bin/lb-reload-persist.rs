//! `lb-reload-persist`: a program (service `lbpersist`, `persist = true`, no listener)
//! that exits on its own soon after it starts, for the tests of the supervisor's
//! restarts with backoff.
//!
//! It prints `lb-reload-persist: pid PID started at MS ms` (MS: milliseconds since the
//! Unix epoch, by its own clock) first thing, then exits with code 5 after 100 ms
//! (`--exit-code=N` and `--exit-after-ms=N` change both), unless lameduck comes first:
//! then it returns and exits 0. It never calls `ready()` and exits before the settle
//! time (250 ms), so the supervisor never sees it ready.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use littleboss::Context;

#[littleboss::main(name = "lbpersist", persist = true, flavor = "current_thread")]
async fn main(lb: Context) -> Result<(), String> {
    let pid = std::process::id();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    littleboss_tests::say!(
        "lb-reload-persist: pid {pid} started at {} ms",
        started.as_millis()
    );
    let mut code = 5;
    let mut after = Duration::from_millis(100);
    for arg in lb.args().into_iter().skip(1) {
        let arg = arg.to_string_lossy().into_owned();
        let (name, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        let number = value
            .parse::<u64>()
            .map_err(|_| format!("unknown argument {arg:?}"));
        match name {
            "--exit-code" => code = i32::try_from(number?).map_err(|e| e.to_string())?,
            "--exit-after-ms" => after = Duration::from_millis(number?),
            "--" => {}
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    tokio::select! {
        () = lb.lameduck() => {
            littleboss_tests::say!("lb-reload-persist: pid {pid} wound down");
            Ok(())
        }
        () = tokio::time::sleep(after) => {
            littleboss_tests::say!("lb-reload-persist: pid {pid} exiting with code {code}");
            std::process::exit(code);
        }
    }
}
