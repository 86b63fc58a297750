//! `lb-adopt`: a server on `littleboss::http` (service `lbadopt`, lameduck 30 s) for the
//! tests of connections that move to the new process at a reload. It answers every
//! request with `pid PID\n`, `GET /slow/MS` after MS milliseconds (printing `lb-adopt:
//! pid PID slow MS` when it comes), and a request to `/read` once it has read its body
//! to the end (other bodies it leaves unread).
//!
//! By default it is the helper as a program uses it: idle HTTP/1.1 connections move to
//! the new process, and it adopts those of the process before. With a switch it is a
//! new process that takes them badly, through the Context's building blocks, while the
//! helper serves what it accepts itself without adopting:
//!
//! | switch | effect |
//! |---|---|
//! | `--refuse` | says it adopts (`lb.adopt`), then drops the adoptions: each connection handed in is declined |
//! | `--take-after-ms N` | takes nothing for N ms, then serves what it takes with a minimal HTTP/1.1 loop |
//! | `--nofile N` | lowers its own limit on open fds to N at start (a process short of fds) |
//!
//! It prints `lb-adopt: pid PID took N` for each connection it takes in the second mode.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use littleboss::Context;
use littleboss_tests::switches;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[littleboss::main(
    name = "lbadopt",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true,
    lameduck = "30s"
)]
async fn main(lb: Context) -> Result<(), Box<dyn std::error::Error>> {
    let (mut refuse, mut take_after) = (false, None);
    let mut args = switches(lb.args());
    while let Some(arg) = args.next() {
        match arg?.as_str() {
            "--refuse" => refuse = true,
            "--take-after-ms" => {
                let ms = args.next().transpose()?.ok_or("--take-after-ms N")?;
                take_after = Some(Duration::from_millis(ms.parse()?));
            }
            "--nofile" => {
                let n: u64 = args.next().transpose()?.ok_or("--nofile N")?.parse()?;
                let nofile = rustix::process::Resource::Nofile;
                let hard = rustix::process::getrlimit(nofile).maximum;
                let limit = rustix::process::Rlimit {
                    current: Some(n),
                    maximum: hard,
                };
                rustix::process::setrlimit(nofile, limit)?;
            }
            other => return Err(format!("lb-adopt: unknown argument {other:?}").into()),
        }
    }
    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
        if request.uri().path() == "/read" {
            let _ = http_body_util::BodyExt::collect(request.into_body()).await;
            let body = Bytes::from(format!("pid {}\n", std::process::id()));
            return Ok::<_, Infallible>(Response::new(Full::new(body)));
        }
        let slow = request.uri().path().strip_prefix("/slow/");
        if let Some(ms) = slow.and_then(|ms| ms.parse().ok()) {
            littleboss_tests::say!("lb-adopt: pid {} slow {ms}", std::process::id());
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let body = Bytes::from(format!("pid {}\n", std::process::id()));
        Ok::<_, Infallible>(Response::new(Full::new(body)))
    });
    let server = littleboss::http::Server::new();
    if refuse {
        drop(lb.adopt("http")?);
        server.hand_over(false).serve(&lb, "http", service).await?;
    } else if let Some(delay) = take_after {
        let adopted = lb.adopt("http")?;
        tokio::spawn(take_slowly(adopted, delay));
        server.hand_over(false).serve(&lb, "http", service).await?;
    } else {
        server.serve(&lb, "http", service).await?;
    }
    Ok(())
}

/// Waits `delay`, then serves each connection it takes: each request answered with
/// `pid PID`, until the client closes.
async fn take_slowly(mut adopted: littleboss::Adoptions, delay: Duration) {
    tokio::time::sleep(delay).await;
    let pid = std::process::id();
    while let Some(moved) = adopted.next().await {
        littleboss_tests::say!("lb-adopt: pid {pid} took 1");
        let Ok(stream) = tokio::net::TcpStream::from_std(moved.stream) else {
            continue;
        };
        tokio::spawn(answer_each(stream, moved.buffered));
    }
}

/// Answers each request head on `stream` (after `read`) with `pid PID`.
async fn answer_each(mut stream: tokio::net::TcpStream, mut read: Vec<u8>) {
    let body = format!("pid {}\n", std::process::id());
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            read.drain(..end + 4);
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read.extend_from_slice(&chunk[..n]),
        }
    }
}
