//! `lb-slow-hello`: a littleboss program (service `lbslow`) whose child takes
//! 500 ms before its handshake, as a large binary on a loaded machine may; for the
//! tests of a stop that arrives before the child said hello.
//!
//! It uses the builder rather than `#[littleboss::main]`, because the delay must come
//! before littleboss takes over `main`: when `LITTLEBOSS_CHANNEL_FD` is set (it runs as
//! a supervisor's child), it sleeps 500 ms first. Then it serves HTTP on its `http`
//! listener (default `tcp:127.0.0.1:0`), prints
//! `lb-slow-hello: pid PID serving http on ADDR` on stderr, calls `ready()`, and
//! returns on lameduck.

use std::process::ExitCode;
use std::time::Duration;

use littleboss::Littleboss;
use littleboss_tests::serve::{serve_greeting, take_http};

/// How long a child waits before littleboss says hello for it.
const DELAY: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    if std::env::var_os("LITTLEBOSS_CHANNEL_FD").is_some() {
        // Before littleboss runs, and before any thread exists: just a sleep.
        std::thread::sleep(DELAY);
    }
    Littleboss::new("lbslow")
        .listener("http", "tcp:127.0.0.1:0")
        .calls_ready(true)
        .run(|lb| async move {
            let listener = take_http(&lb, "lb-slow-hello")?;
            lb.ready();
            serve_greeting(listener, &lb, "lb-slow-hello: accept").await
        })
}
