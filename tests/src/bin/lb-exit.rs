//! `lb-exit`: a littleboss program (service `lbexit`) that exits on its own, for
//! `tests/faults.rs`.
//!
//! It serves HTTP on its `http` listener (default `tcp:127.0.0.1:0`), prints
//! `lb-exit: pid PID serving http on ADDR` on stderr and calls `ready()`; then,
//! `--exit-after-ms=N` (default 1000) after it started, it exits with code
//! `--code=N` (default 7), whatever it is doing. On lameduck it returns normally.

use std::io;
use std::time::Duration;

use littleboss::Context;
use littleboss_tests::serve::{serve_greeting, take_http};

#[littleboss::main(
    name = "lbexit",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true
)]
async fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    let (mut after_ms, mut code) = (1000u64, 7i32);
    for arg in lb.args().iter().skip(1) {
        let arg = arg.to_string_lossy();
        let number = |prefix: &str| arg.strip_prefix(prefix).and_then(|v| v.parse::<i64>().ok());
        if let Some(ms) = number("--exit-after-ms=") {
            after_ms = u64::try_from(ms).unwrap_or(0);
        } else if let Some(n) = number("--code=") {
            code = i32::try_from(n).unwrap_or(1);
        } else if arg != "--" {
            littleboss_tests::say!("lb-exit: unknown argument {arg:?}");
            std::process::exit(2);
        }
    }
    let listener = take_http(&lb, "lb-exit")?;
    lb.ready();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        littleboss_tests::say!("lb-exit: pid {pid} exiting with code {code}");
        std::process::exit(code);
    });
    serve_greeting(listener, &lb, "lb-exit: accept").await
}
