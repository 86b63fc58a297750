//! `lb-axum-plain`: axum served the plain way, for the benchmark to compare with
//! `littleboss::axum::serve` (service `axumplain`):
//! `axum::serve(listener, app).with_graceful_shutdown(lb.lameduck())`, nothing more.
//!
//! (With `TCP_NODELAY` on its connections, as the helper has.) It answers `GET /` with `hello from axum, pid PID`, as the `axum` example does, and
//! refuses arguments of its own (so that a reload with arguments fails and rolls back).

use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;

#[littleboss::main(
    name = "axumplain",
    listener(http = "tcp:127.0.0.1:8083"),
    calls_ready = true
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    if let Some(extra) = lb.args().get(1) {
        let message = format!("lb-axum-plain takes no arguments; got {extra:?}");
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            message,
        ));
    }
    // TCP_NODELAY as the helper sets it, so that the comparison is of the wind-down.
    let listener = lb.tcp_listener("http")?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new().route("/", get(hello));
    lb.ready();
    axum::serve(listener, app)
        .with_graceful_shutdown(lb.lameduck())
        .await
}

async fn hello() -> String {
    format!("hello from axum, pid {}\n", std::process::id())
}
