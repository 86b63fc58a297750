//! `lb-dev`: a build of service `lbdev` that serves, for the dev mode tests.
//!
//! It takes its `http` listener (default `tcp:127.0.0.1:0`), prints
//! `lb-dev: pid PID serving http on ADDR` on stderr, calls `ready()`, and answers every
//! request with `pid PID exe EXE mode MODE\n` until lameduck; then it stops accepting
//! and finishes the connections it has. It ignores its arguments.

use std::io;

use littleboss::Context;
use littleboss_tests::serve::{serve_greeting, take_http};

#[littleboss::main(name = "lbdev", listener(http = "tcp:127.0.0.1:0"), calls_ready = true)]
async fn main(lb: Context) -> io::Result<()> {
    let listener = take_http(&lb, "lb-dev")?;
    lb.ready();
    serve_greeting(listener, &lb, "lb-dev: accept").await
}
