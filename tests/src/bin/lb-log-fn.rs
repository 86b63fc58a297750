//! `lb-log-fn`: a program built with the builder whose supervisor messages go to a
//! function of its own (service `lbsdquiet`).
//!
//! By default it calls `.log_with(|_, _| {})`: the supervisor writes no
//! `littleboss: ...` line at all. With `--log-to-stdout` anywhere on its command line it
//! calls `.log_with(|level, line| println!("LOG {level:?} {line}"))` instead.
//!
//! It serves its `http` listener (default `tcp:127.0.0.1:0`) as `lb-unix` does: one
//! line `pid PID exe EXE mode MODE\n` per connection, prints
//! `lb-log-fn: pid PID serving http on ADDR` on stderr, calls `lb.ready()` and returns
//! at lameduck. With `--exit-at-start` (read from `lb.args()`, so a reload can pass it)
//! it exits with code 3 before taking its listener.

use std::process::ExitCode;

use littleboss::{Context, Littleboss};
use littleboss_tests::serve::{greeting, serve_lines, take_http};

fn main() -> ExitCode {
    let to_stdout = std::env::args_os().any(|arg| arg == "--log-to-stdout");
    let lb = Littleboss::new("lbsdquiet")
        .listener("http", "tcp:127.0.0.1:0")
        .calls_ready(true);
    let lb = if to_stdout {
        lb.log_with(|level, line| println!("LOG {level:?} {line}"))
    } else {
        lb.log_with(|_, _| {})
    };
    lb.run(serve)
}

async fn serve(lb: Context) -> std::io::Result<()> {
    let pid = std::process::id();
    if lb.args().iter().any(|arg| arg == "--exit-at-start") {
        littleboss_tests::say!("lb-log-fn: pid {pid} exiting at start with code 3");
        std::process::exit(3);
    }
    let line = greeting(&lb)?;
    let listener = take_http(&lb, "lb-log-fn")?;
    lb.ready();
    serve_lines(listener, lb.lameduck(), "lb-log-fn: accept", line).await;
    Ok(())
}
