//! `lb-serve`: a server on `littleboss::http` (service `lbserve`), for the tests of the
//! HTTP helpers.
//!
//! It serves its `http` listener (default `tcp:127.0.0.1:0`, lameduck 2 s) with
//! `littleboss::http::serve`, or with `littleboss::axum::serve` given `--axum`, over TLS
//! given `--cert PATH --key PATH`; with `--unix`, also its `sock` listener (off until
//! `--sock=PATH`); with `--max-fds N`, under a limit of N open files;
//! `--tls-handshake-ms N` sets the TLS handshake timeout; `--no-hand-over` winds idle
//! HTTP/1.1 connections down by closing them instead of moving them to the new process
//! (`Server::hand_over(false)`). Every answer
//! names its pid (`pid PID\n`):
//!
//! - `GET /`: at once.
//! - `GET /slow/MS`: after MS milliseconds.
//! - `GET /tls`: `pid PID sni NAME alpn PROTO\n`, what the request's
//!   `littleboss::http::TlsInfo` says (`-` for none).
//! - `GET /upgrade` (with `Upgrade: echo`): `101`, then echoes what the client sends
//!   until lameduck, when it writes `bye\n` and closes; it finds lameduck through the
//!   `littleboss::Context` in the request's extensions.
//!
//! It prints `lb-serve: pid PID lameduck time 2s` at start (`Context::lameduck_time`),
//! `lb-serve: pid PID slow MS` when a slow request comes, `lb-serve: pid PID lameduck`
//! when lameduck comes and `lb-serve: pid PID done` when `serve` returns.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use littleboss::Context;
use littleboss_tests::switches;
use rustix::process::{Resource, Rlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[littleboss::main(
    name = "lbserve",
    listener(http = "tcp:127.0.0.1:0", sock = "unix:"),
    calls_ready = true,
    lameduck = "2s"
)]
async fn main(lb: Context) -> Result<(), Box<dyn std::error::Error>> {
    let (mut axum, mut cert, mut key, mut unix) = (false, None, None, false);
    let mut hand_over = true;
    let mut handshake = None;
    let mut args = switches(lb.args());
    while let Some(arg) = args.next() {
        match arg?.as_str() {
            "--axum" => axum = true,
            "--unix" => unix = true,
            "--no-hand-over" => hand_over = false,
            "--tls-handshake-ms" => {
                let ms = args
                    .next()
                    .transpose()?
                    .ok_or("--tls-handshake-ms N")?
                    .parse()?;
                handshake = Some(Duration::from_millis(ms));
            }
            "--max-fds" => {
                let max: u64 = args.next().transpose()?.ok_or("--max-fds N")?.parse()?;
                let limit = rustix::process::getrlimit(Resource::Nofile);
                let limit = Rlimit {
                    current: Some(max),
                    ..limit
                };
                rustix::process::setrlimit(Resource::Nofile, limit)?;
            }
            "--cert" => cert = args.next().transpose()?,
            "--key" => key = args.next().transpose()?,
            other => return Err(format!("lb-serve: unknown argument {other:?}").into()),
        }
    }
    let mut server = littleboss::http::Server::new().hand_over(hand_over);
    if let (Some(cert), Some(key)) = (cert, key) {
        server = server.tls(littleboss::http::Tls::from_pem_files(cert, key)?);
    }
    if let Some(timeout) = handshake {
        server = server.tls_handshake_timeout(timeout);
    }
    let pid = std::process::id();
    littleboss_tests::say!("lb-serve: pid {pid} lameduck time {:?}", lb.lameduck_time());
    let watch = lb.clone();
    tokio::spawn(async move {
        watch.lameduck().await;
        littleboss_tests::say!("lb-serve: pid {pid} lameduck");
    });
    if axum {
        let app = axum::Router::new().fallback(|request: axum::extract::Request| async move {
            answer::<axum::body::Body>(request.uri().path(), None).await
        });
        server.serve_axum(&lb, "http", app).await?;
    } else {
        let service = hyper::service::service_fn(|mut request: Request<Incoming>| async move {
            let upgrade = request.uri().path() == "/upgrade";
            let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
            let lb = request.extensions().get::<Context>().cloned();
            if request.uri().path() == "/tls" {
                let tls = request.extensions().get::<littleboss::http::TlsInfo>();
                let sni = tls.and_then(|t| t.server_name()).unwrap_or("-");
                let alpn = tls.and_then(|t| t.alpn_protocol()).unwrap_or(b"-");
                let alpn = String::from_utf8_lossy(alpn);
                let body = format!("pid {} sni {sni} alpn {alpn}\n", std::process::id());
                return Ok(Response::new(Full::new(Bytes::from(body))));
            }
            Ok::<_, Infallible>(
                answer::<Full<Bytes>>(request.uri().path(), on_upgrade.zip(lb)).await,
            )
        });
        if unix {
            // Two listeners: the second server says ready, once both are taken.
            let tcp = server.clone().ready(false).serve(&lb, "http", service);
            let sock = server.serve(&lb, "sock", service);
            tokio::try_join!(tcp, sock)?;
        } else {
            server.serve(&lb, "http", service).await?;
        }
    }
    littleboss_tests::say!("lb-serve: pid {pid} done");
    Ok(())
}

/// The answer to `path`.
async fn answer<B: From<Bytes>>(
    path: &str,
    upgrade: Option<(hyper::upgrade::OnUpgrade, Context)>,
) -> Response<B> {
    let pid = std::process::id();
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|ms| ms.parse().ok()) {
        littleboss_tests::say!("lb-serve: pid {pid} slow {ms}");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some((on_upgrade, lb)) = upgrade {
        tokio::spawn(echo(on_upgrade, lb));
        let mut response = Response::new(B::from(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("echo"));
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        return response;
    }
    Response::new(B::from(Bytes::from(format!("pid {pid}\n"))))
}

/// Echoes on an upgraded connection until lameduck, then says `bye` and closes.
async fn echo(on_upgrade: hyper::upgrade::OnUpgrade, lb: Context) {
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let mut io = TokioIo::new(upgraded);
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            _ = lb.lameduck() => {
                let _ = io.write_all(b"bye\n").await;
                let _ = io.shutdown().await;
                return;
            }
            n = io.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if io.write_all(&buf[..n]).await.is_err() { return },
            },
        }
    }
}
