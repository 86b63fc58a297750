//! `lb-grandparent PROGRAM`: a littleboss program (service `lbgrand`) that starts
//! `PROGRAM --http=127.0.0.1:0` as a child of its own, for `tests/child_channel.rs`.
//! Supervised, it makes `PROGRAM` a grandchild of the supervisor that inherits
//! `LITTLEBOSS_CHANNEL_FD` and `LITTLEBOSS_SUPERVISOR_PID` (not its channel: that fd is
//! close-on-exec), as any program a service starts does.
//!
//! It takes its `http` listener (default `tcp:127.0.0.1:0`), starts `PROGRAM` (stdin
//! from `/dev/null`, stdout and stderr its own), prints `lb-grandparent: pid PID
//! started GPID` and `lb-grandparent: pid PID serving http on ADDR` on stderr, calls
//! `ready()`, and serves HTTP until lameduck; then it kills `PROGRAM` and reaps it.

use std::io;
use std::process::{Command, Stdio};

use littleboss::Context;
use littleboss_tests::serve::{serve_greeting, take_http};
use littleboss_tests::switches;

#[littleboss::main(
    name = "lbgrand",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true
)]
async fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    let program = switches(lb.args())
        .next()
        .ok_or_else(|| io::Error::other("usage: lb-grandparent PROGRAM"))?
        .map_err(io::Error::other)?;
    let listener = take_http(&lb, "lb-grandparent")?;
    let mut grandchild = Command::new(&program)
        .arg("--http=127.0.0.1:0")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
    littleboss_tests::say!("lb-grandparent: pid {pid} started {}", grandchild.id());
    lb.ready();
    let served = serve_greeting(listener, &lb, "lb-grandparent: accept").await;
    let _ = grandchild.kill();
    let _ = grandchild.wait();
    served
}
