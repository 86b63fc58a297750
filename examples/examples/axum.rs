//! axum, reloaded without losing a request.
//!
//! ```text
//! cargo run -p littleboss-examples --example axum -- --littleboss=start &
//! curl localhost:8082/
//! cargo run -p littleboss-examples --example axum -- --littleboss=reload
//! ```
//!
//! `axum::serve(listener, app).with_graceful_shutdown(lb.lameduck())` alone loses
//! requests on every reload: it keeps accepting until the signal, then closes at once
//! the connections that were accepted but had not sent their request yet, and idle
//! keep-alive connections whose next request may already be on its way.
//! `littleboss::axum::serve` does what a reload needs instead (see `littleboss::http`):
//! it stops accepting without touching the shared listener, and moves each idle
//! keep-alive connection to the new process, so a client sees no close.

use axum::Router;
use axum::routing::get;

#[littleboss::main(
    name = "axum-example",
    listener(http = "tcp:127.0.0.1:8082"),
    calls_ready = true
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    let app = Router::new().route("/", get(hello));
    littleboss::axum::serve(&lb, "http", app).await
}

async fn hello() -> String {
    format!("hello from axum, pid {}\n", std::process::id())
}
