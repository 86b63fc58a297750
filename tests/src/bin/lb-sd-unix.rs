//! `lb-sd-unix`: a server with a unix listener and a TCP one (service `lbsdunix`).
//!
//! It declares `api = "unix:"` (off until `--api=PATH` or `--api=@NAME` gives it an
//! address) and `http = "tcp:127.0.0.1:0"`, with `unix_mode = "0660"`. Every connection
//! on either listener gets one line, `pid PID exe EXE mode MODE\n` (the format of
//! [`littleboss_tests::Answer`]), and is closed; the client sends nothing. For each
//! listener it serves it prints `lb-sd-unix: pid PID serving NAME on ADDR` on stderr;
//! one it cannot take is reported as `lb-sd-unix: pid PID cannot take NAME: ERROR`.
//!
//! It calls `lb.ready()` once it serves, and on lameduck drops its listeners and returns.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use littleboss::{Context, Mode};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

#[littleboss::main(
    name = "lbsdunix",
    listener(api = "unix:", http = "tcp:127.0.0.1:0"),
    unix_mode = "0660",
    calls_ready = true
)]
async fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    let mode = match lb.mode() {
        Mode::Bypass => "bypass",
        Mode::Supervised => "supervised",
    };
    let exe = std::env::current_exe()?;
    let line: Arc<str> = format!("pid {pid} exe {} mode {mode}\n", exe.display()).into();

    let unix = match lb.unix_listener("api") {
        Ok(listener) => {
            let addr = listener.local_addr()?;
            let shown = match (addr.as_pathname(), addr.is_unnamed()) {
                (Some(path), _) => path.display().to_string(),
                (None, true) => "(unnamed)".to_string(),
                (None, false) => "(abstract)".to_string(),
            };
            eprintln!("lb-sd-unix: pid {pid} serving api on {shown}");
            Some(listener)
        }
        Err(e) => {
            eprintln!("lb-sd-unix: pid {pid} cannot take api: {e}");
            None
        }
    };
    let tcp = match lb.tcp_listener("http") {
        Ok(listener) => {
            eprintln!(
                "lb-sd-unix: pid {pid} serving http on {}",
                listener.local_addr()?
            );
            Some(listener)
        }
        Err(e) => {
            eprintln!("lb-sd-unix: pid {pid} cannot take http: {e}");
            None
        }
    };
    lb.ready();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(listener) = unix {
        tasks.spawn(serve_unix(listener, lb.clone(), Arc::clone(&line)));
    }
    if let Some(listener) = tcp {
        tasks.spawn(serve_tcp(listener, lb.clone(), Arc::clone(&line)));
    }
    if tasks.is_empty() {
        lb.lameduck().await;
    }
    while tasks.join_next().await.is_some() {}
    eprintln!("lb-sd-unix: pid {pid} wound down");
    Ok(())
}

async fn serve_unix(listener: UnixListener, lb: Context, line: Arc<str>) {
    loop {
        tokio::select! {
            _ = lb.lameduck() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, Arc::clone(&line)));
                }
                Err(e) => {
                    eprintln!("lb-sd-unix: accept api: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    // Stop accepting: close this process's copy only (the socket is shared).
    drop(listener);
}

async fn serve_tcp(listener: TcpListener, lb: Context, line: Arc<str>) {
    loop {
        tokio::select! {
            _ = lb.lameduck() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, Arc::clone(&line)));
                }
                Err(e) => {
                    eprintln!("lb-sd-unix: accept http: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
}

/// Writes the line and closes the connection; errors only end it.
async fn answer(mut stream: impl AsyncWrite + Unpin, line: Arc<str>) {
    if stream.write_all(line.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}
