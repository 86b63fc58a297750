//! `lb-axum-drain`: axum served by the HTTP helper with handing over turned off (service
//! `axumdrain`), for the benchmark to compare with the helper that hands idle
//! connections over: `littleboss::http::Server::new().hand_over(false).serve_axum(&lb,
//! "http", app)`, which winds down by closing, as a server does on its own.
//!
//! It answers `GET /` with `hello from axum, pid PID`, as the `axum` example does, and
//! refuses arguments of its own (so that a reload with arguments fails and rolls back).

use axum::Router;
use axum::routing::get;

#[littleboss::main(
    name = "axumdrain",
    listener(http = "tcp:127.0.0.1:8084"),
    calls_ready = true
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    if let Some(extra) = lb.args().get(1) {
        let message = format!("lb-axum-drain takes no arguments; got {extra:?}");
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            message,
        ));
    }
    let app = Router::new().route("/", get(hello));
    littleboss::http::Server::new()
        .hand_over(false)
        .serve_axum(&lb, "http", app)
        .await
}

async fn hello() -> String {
    format!("hello from axum, pid {}\n", std::process::id())
}
