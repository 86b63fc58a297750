//! `lb-reload-ready`: a program of service `lbhttp` that never becomes ready, with a
//! short `ready_timeout` (1 s), for the reload tests: a reload to it fails with
//! `did not call ready()` after a second instead of `lb-http`'s thirty.
//!
//! It declares the listeners of `lb-http` (`http`, and `spare`, off) and
//! `calls_ready = true`, takes `http`, prints
//! `lb-reload-ready: pid PID holding http on ADDR`, and then never calls `lb.ready()`;
//! it returns at lameduck. It ignores its arguments.

use littleboss::Context;

#[littleboss::main(
    name = "lbhttp",
    listener(http = "tcp:127.0.0.1:0", spare = "tcp:"),
    calls_ready = true,
    ready_timeout = "1s"
)]
async fn main(lb: Context) -> std::io::Result<()> {
    let listener = lb.tcp_listener("http")?;
    littleboss_tests::say!(
        "lb-reload-ready: pid {} holding http on {}",
        std::process::id(),
        listener.local_addr()?
    );
    lb.lameduck().await;
    Ok(())
}
