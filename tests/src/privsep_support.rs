//! Support for `tests/tests/flags_and_users.rs` and its helper programs
//! (`src/bin/lb-priv-*.rs`): what a helper knows about itself, and a tiny HTTP server
//! that answers every request with it, as JSON.
//!
//! Every helper takes its `http` listener, prints `PROGRAM: pid PID serving http on
//! ADDR` on stderr (the line [`Spawned::wait_serving`](crate::Spawned::wait_serving)
//! reads), calls `lb.ready()`, and answers each request with the [`Report`] it made at
//! start, until lameduck.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use littleboss::{Context, Mode};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// What a helper answers: a JSON object.
pub type Report = Map<String, Value>;

/// The process as it sees itself: `pid`, `mode` (`bypass` or `supervised`), `args`
/// (`lb.args()`), `argv` (`std::env::args_os()`), `uid`, `gid` and `groups` (the
/// `Uid:`, `Gid:` and `Groups:` lines of `/proc/self/status`, as lists of numbers) and
/// `env` (`HOME`, `USER` and `LOGNAME`, `null` when unset).
pub fn report(lb: &Context) -> Report {
    let lossy = |args: Vec<std::ffi::OsString>| -> Vec<String> {
        args.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let ids = |key: &str| -> Vec<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let var = |name: &str| -> Value {
        std::env::var_os(name).map_or(Value::Null, |v| json!(v.to_string_lossy()))
    };
    let mode = match lb.mode() {
        Mode::Bypass => "bypass",
        Mode::Supervised => "supervised",
    };
    let mut report = Map::new();
    report.insert("pid".into(), json!(std::process::id()));
    report.insert("mode".into(), json!(mode));
    report.insert("args".into(), json!(lossy(lb.args())));
    report.insert("argv".into(), json!(lossy(std::env::args_os().collect())));
    report.insert("uid".into(), json!(ids("Uid:")));
    report.insert("gid".into(), json!(ids("Gid:")));
    report.insert("groups".into(), json!(ids("Groups:")));
    report.insert(
        "env".into(),
        json!({ "HOME": var("HOME"), "USER": var("USER"), "LOGNAME": var("LOGNAME") }),
    );
    report
}

/// Serves the `http` listener, answering every request with `report` as JSON, until
/// lameduck; `program` names the helper in its stderr lines.
pub async fn serve(lb: Context, program: &str, report: Report) -> io::Result<()> {
    let pid = std::process::id();
    let listener = lb.tcp_listener("http")?;
    let addr = listener.local_addr()?;
    eprintln!("{program}: pid {pid} serving http on {addr}");
    let body: Arc<str> = format!("{}\n", Value::Object(report)).into();
    lb.ready();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = lb.lameduck() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(answer(stream, Arc::clone(&body)));
                }
                Err(e) => {
                    eprintln!("{program}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Stop accepting (the socket is shared with the supervisor: close, never shut down),
    // then finish what was accepted.
    drop(listener);
    while connections.join_next().await.is_some() {}
    eprintln!("{program}: pid {pid} wound down");
    Ok(())
}

/// Reads a request head (up to 10 s) and answers it with `body`.
async fn answer(mut stream: TcpStream, body: Arc<str>) {
    let head = tokio::time::timeout(Duration::from_secs(10), async {
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 || head.len() > 64 * 1024 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(());
            }
        }
    })
    .await;
    if !matches!(head, Ok(Some(()))) {
        return;
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(response.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}
