//! `lb-reload-keepalive`: an HTTP/1.1 server with keep-alive (service `lbkeep`), for the
//! reload tests.
//!
//! It serves its `http` listener (default `tcp:127.0.0.1:0`) with
//! [`littleboss_tests::reload_support::serve`]: every request is answered with
//! `pid PID exe EXE mode MODE\n`, connections are kept alive, and at lameduck it stops
//! accepting, answers each connection's next request with `Connection: close`, and
//! closes a connection that sends nothing two seconds later. It prints
//! `lb-reload-keepalive: pid PID serving http on ADDR` once it serves and
//! `lb-reload-keepalive: pid PID lameduck` when it stops accepting. It calls
//! `lb.ready()` once it serves; its `lameduck` limit (5 s) leaves room for the grace.

use littleboss::Context;
use littleboss_tests::reload_support;
use littleboss_tests::serve::take_http;

#[littleboss::main(
    name = "lbkeep",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true,
    lameduck = "5s"
)]
async fn main(lb: Context) -> std::io::Result<()> {
    let listener = take_http(&lb, "lb-reload-keepalive")?;
    lb.ready();
    reload_support::serve(listener, lb, "lb-reload-keepalive").await
}
