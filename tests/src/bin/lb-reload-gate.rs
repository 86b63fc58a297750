//! `lb-reload-gate`: a server for service `lbhttp` that becomes ready only when the test
//! says so, for the reload tests: a reload to it stays under way as long as the test
//! needs.
//!
//! It declares the listeners of `lb-http` (`http`, and `spare`, off) and takes `http`
//! (printing `lb-reload-gate: pid PID holding http on ADDR`). With `--ready-when=PATH`
//! it then waits until the file `PATH` exists (it looks every 10 ms; the default
//! `ready_timeout`, 30 s, bounds the wait; lameduck ends it), as a program still
//! setting up would: it accepts no connection meanwhile. Then (at once without the
//! switch) it prints `lb-reload-gate: pid PID serving and ready`, calls `lb.ready()`,
//! and serves `http` with [`littleboss_tests::reload_support::serve`], answering
//! `pid PID exe EXE mode MODE\n` as `lb-http` does.

use std::path::PathBuf;

use littleboss::Context;
use littleboss_tests::reload_support;

#[littleboss::main(
    name = "lbhttp",
    listener(http = "tcp:127.0.0.1:0", spare = "tcp:"),
    calls_ready = true,
    lameduck = "5s"
)]
async fn main(lb: Context) -> std::io::Result<()> {
    let pid = std::process::id();
    let mut gate: Option<PathBuf> = None;
    for arg in lb.args().into_iter().skip(1) {
        let arg = arg.to_string_lossy().into_owned();
        match arg.strip_prefix("--ready-when=") {
            Some(path) => gate = Some(PathBuf::from(path)),
            None if arg == "--" => {}
            None => {
                littleboss_tests::say!("lb-reload-gate: unknown argument {arg:?}");
                std::process::exit(2);
            }
        }
    }
    let listener = lb.tcp_listener("http")?;
    littleboss_tests::say!(
        "lb-reload-gate: pid {pid} holding http on {}",
        listener.local_addr()?
    );
    let opened = match &gate {
        Some(gate) => reload_support::wait_for_gate(&lb, gate).await,
        None => true,
    };
    if !opened {
        return Ok(());
    }
    littleboss_tests::say!("lb-reload-gate: pid {pid} serving and ready");
    lb.ready();
    reload_support::serve(listener, lb, "lb-reload-gate").await
}
