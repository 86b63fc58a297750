//! `lb-silent`: a littleboss program (service `lbquiet`) that never writes to its
//! stdout or stderr, for `tests/log_stall.rs`: only the supervisor writes there.
//!
//! It serves its `http` listener (default `tcp:127.0.0.1:0`) with the greeting of
//! `littleboss_tests::serve`, calls `ready()`, and returns at lameduck (100 ms).

use std::io;

use littleboss::Context;
use littleboss_tests::serve::serve_greeting;

#[littleboss::main(
    name = "lbquiet",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true,
    lameduck = "100ms"
)]
async fn main(lb: Context) -> io::Result<()> {
    let listener = lb.tcp_listener("http")?;
    lb.ready();
    serve_greeting(listener, &lb, "").await
}
