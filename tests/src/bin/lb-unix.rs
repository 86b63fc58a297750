//! `lb-unix`: a server with a unix listener and a TCP one (service `lbsdunix`).
//!
//! It declares `api = "unix:"` (off until `--api=PATH` or `--api=@NAME` gives it an
//! address) and `http = "tcp:127.0.0.1:0"`, with `unix_mode = "0660"`. Every connection
//! on either listener gets one line, `pid PID exe EXE mode MODE\n` (the format of
//! [`littleboss_tests::Answer`]), and is closed; the client sends nothing. For each
//! listener it serves it prints `lb-unix: pid PID serving NAME on ADDR` on stderr;
//! one it cannot take is reported as `lb-unix: pid PID cannot take NAME: ERROR`.
//!
//! It calls `lb.ready()` once it serves, and on lameduck drops its listeners and returns.

use std::io;
use std::sync::Arc;

use littleboss::Context;
use littleboss_tests::serve::{greeting, serve_lines};

#[littleboss::main(
    name = "lbsdunix",
    listener(api = "unix:", http = "tcp:127.0.0.1:0"),
    unix_mode = "0660",
    calls_ready = true
)]
async fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    let line = greeting(&lb)?;

    let unix = match lb.unix_listener("api") {
        Ok(listener) => {
            let addr = listener.local_addr()?;
            let shown = match (addr.as_pathname(), addr.is_unnamed()) {
                (Some(path), _) => path.display().to_string(),
                (None, true) => "(unnamed)".to_string(),
                (None, false) => "(abstract)".to_string(),
            };
            littleboss_tests::say!("lb-unix: pid {pid} serving api on {shown}");
            Some(listener)
        }
        Err(e) => {
            littleboss_tests::say!("lb-unix: pid {pid} cannot take api: {e}");
            None
        }
    };
    let tcp = match lb.tcp_listener("http") {
        Ok(listener) => {
            littleboss_tests::say!(
                "lb-unix: pid {pid} serving http on {}",
                listener.local_addr()?
            );
            Some(listener)
        }
        Err(e) => {
            littleboss_tests::say!("lb-unix: pid {pid} cannot take http: {e}");
            None
        }
    };
    lb.ready();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(listener) = unix {
        let who = "lb-unix: accept api";
        tasks.spawn(serve_lines(listener, lb.lameduck(), who, Arc::clone(&line)));
    }
    if let Some(listener) = tcp {
        let who = "lb-unix: accept http";
        tasks.spawn(serve_lines(listener, lb.lameduck(), who, Arc::clone(&line)));
    }
    if tasks.is_empty() {
        lb.lameduck().await;
    }
    while tasks.join_next().await.is_some() {}
    littleboss_tests::say!("lb-unix: pid {pid} wound down");
    Ok(())
}
