//! A counter and a cache that survive reloads: state transfer.
//!
//! ```text
//! cargo run -p littleboss-examples --example state -- --littleboss=start &
//! curl localhost:8080/                      # hits 1, cache 0 entries, pid 1234
//! curl -X PUT -d hello localhost:8080/greeting
//! curl localhost:8080/greeting              # hello
//! cargo run -p littleboss-examples --example state -- --littleboss=reload
//! curl localhost:8080/                      # hits 2, cache 1 entries, pid 1300
//! curl localhost:8080/greeting              # hello: the new process has it
//! ```
//!
//! Before it is ready, the new process asks the one it replaces for its state
//! (`take_state`); the old one, still serving, answers with a snapshot (`state_wanted`,
//! `give_value`) and keeps its own until the reload is committed (`outcome`), so a
//! reload that fails loses nothing. The state is a typed value with a format version:
//! a release that changes its layout bumps it, and a process that cannot read the
//! version it is given starts cold instead of misreading it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

/// The format version of [`Saved`]: bump it when its layout changes.
const FORMAT: u32 = 1;

/// What survives a reload.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Saved {
    hits: u64,
    cache: BTreeMap<String, String>,
}

#[littleboss::main(
    name = "state",
    listener(http = "tcp:127.0.0.1:8080"),
    calls_ready = true
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    // The state of the process this one replaces, if there is one; cold otherwise.
    let saved = match lb.take_state().await {
        Ok(Some(inherited)) => inherited.take_value::<Saved>(FORMAT).unwrap_or_else(|e| {
            eprintln!("state: starting cold: {e}");
            Saved::default()
        }),
        Ok(None) => Saved::default(),
        Err(e) => {
            eprintln!("state: starting cold: {e}");
            Saved::default()
        }
    };
    let saved = Arc::new(Mutex::new(saved));

    // Give a snapshot to each process that asks; it is ours until committed.
    tokio::spawn({
        let lb = lb.clone();
        let saved = Arc::clone(&saved);
        async move {
            loop {
                let request = lb.state_wanted().await;
                let snapshot = lock(&saved).clone();
                match request.give_value(FORMAT, &snapshot, Vec::new()) {
                    Ok(given) => {
                        let committed = given.outcome().await;
                        eprintln!("state: handed over, committed: {committed}");
                    }
                    Err(e) => eprintln!("state: could not hand it over: {e}"),
                }
            }
        }
    });

    let service = service_fn(move |request: Request<Incoming>| {
        let saved = Arc::clone(&saved);
        async move { Ok::<_, Infallible>(answer(request, &saved).await) }
    });
    littleboss::http::serve(&lb, "http", service).await
}

/// `GET /` counts and says so; `PUT /KEY` stores the body; `GET /KEY` reads it back.
async fn answer(request: Request<Incoming>, saved: &Mutex<Saved>) -> Response<Full<Bytes>> {
    let key = request.uri().path().trim_start_matches('/').to_string();
    let text = match (request.method().clone(), key.as_str()) {
        (Method::GET, "") => {
            let mut saved = lock(saved);
            saved.hits += 1;
            format!(
                "hits {}, cache {} entries, pid {}\n",
                saved.hits,
                saved.cache.len(),
                std::process::id()
            )
        }
        (Method::PUT, _) => {
            let body = match request.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => return status(StatusCode::BAD_REQUEST),
            };
            let value = String::from_utf8_lossy(&body).into_owned();
            lock(saved).cache.insert(key, value);
            "stored\n".to_string()
        }
        (Method::GET, _) => match lock(saved).cache.get(&key) {
            Some(value) => format!("{value}\n"),
            None => return status(StatusCode::NOT_FOUND),
        },
        _ => return status(StatusCode::METHOD_NOT_ALLOWED),
    };
    Response::new(Full::new(Bytes::from(text)))
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

fn lock(saved: &Mutex<Saved>) -> std::sync::MutexGuard<'_, Saved> {
    saved
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
