//! `lb-persist-gate`: a persistent HTTP server (service `lbpgate`, `persist = true`,
//! `calls_ready = true`) that becomes ready only when the test says so, for the tests of
//! a stop that comes while a persistent service restarts or reloads
//! (`tests/stop_races.rs`).
//!
//! It prints `lb-persist-gate: pid PID started` first thing, then takes the `http`
//! listener (`tcp:127.0.0.1:0`) and prints `lb-persist-gate: pid PID serving http on
//! ADDR`. With `--ready-when=PATH` it waits until the file `PATH` exists (it looks every
//! 10 ms; lameduck ends the wait) before it calls `lb.ready()`, as a program still
//! setting up would: a reload to it stays under way as long as the test needs. Without
//! the switch it is ready at once. Then it answers every request with `pid PID exe EXE
//! mode MODE\n` until lameduck, and returns. It never exits on its own: the tests kill
//! it to make the supervisor start it again.

use std::path::PathBuf;

use littleboss::Context;
use littleboss_tests::reload_support;
use littleboss_tests::serve::{serve_greeting, take_http};

#[littleboss::main(
    name = "lbpgate",
    listener(http = "tcp:127.0.0.1:0"),
    persist = true,
    calls_ready = true,
    lameduck = "2s",
    flavor = "current_thread"
)]
async fn main(lb: Context) -> std::io::Result<()> {
    let pid = std::process::id();
    littleboss_tests::say!("lb-persist-gate: pid {pid} started");
    let mut gate: Option<PathBuf> = None;
    for arg in lb.args().into_iter().skip(1) {
        let arg = arg.to_string_lossy().into_owned();
        match arg.strip_prefix("--ready-when=") {
            Some(path) => gate = Some(PathBuf::from(path)),
            None if arg == "--" => {}
            None => {
                littleboss_tests::say!("lb-persist-gate: unknown argument {arg:?}");
                std::process::exit(2);
            }
        }
    }
    let listener = take_http(&lb, "lb-persist-gate")?;
    let opened = match &gate {
        Some(gate) => reload_support::wait_for_gate(&lb, gate).await,
        None => true,
    };
    if !opened {
        return Ok(());
    }
    littleboss_tests::say!("lb-persist-gate: pid {pid} ready");
    lb.ready();
    serve_greeting(listener, &lb, "lb-persist-gate: accept").await
}
