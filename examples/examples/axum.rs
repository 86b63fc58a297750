//! axum, reloaded without losing a request.
//!
//! ```text
//! cargo run -p littleboss-examples --example axum -- --littleboss=start &
//! curl localhost:8082/
//! cargo run -p littleboss-examples --example axum -- --littleboss=reload
//! ```
//!
//! `axum::serve(...).with_graceful_shutdown(lb.lameduck())` alone would lose requests on
//! every reload: it keeps accepting until the signal, then closes at once the
//! connections that were accepted but had not sent their request yet, and idle
//! keep-alive connections whose next request may already be on its way. So:
//!
//! - [`UntilLameduck`] stops accepting the moment lameduck comes (the new process takes
//!   the queue; the shared listener is never shut down);
//! - during lameduck every response carries `Connection: close`, so keep-alive clients
//!   move to the new process between requests;
//! - the graceful shutdown starts only a grace period after lameduck, when the
//!   connections still open are idle ones.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use axum::middleware::map_response_with_state;
use axum::response::Response;
use axum::routing::get;
use tokio::net::{TcpListener, TcpStream};

/// How long connections may stay open after lameduck before the idle ones are closed.
const IDLE_GRACE: Duration = Duration::from_secs(1);

#[littleboss::main(
    name = "axum-example",
    listener(http = "tcp:127.0.0.1:8082"),
    calls_ready = true
)]
async fn main(lb: littleboss::Context) -> io::Result<()> {
    let listener = UntilLameduck {
        inner: lb.tcp_listener("http")?,
        lb: lb.clone(),
    };
    let app = Router::new()
        .route("/", get(hello))
        .layer(map_response_with_state(lb.clone(), close_in_lameduck));
    lb.ready();
    let shutdown = {
        let lameduck = lb.lameduck();
        async move {
            lameduck.await;
            tokio::time::sleep(IDLE_GRACE).await;
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn hello() -> String {
    format!("hello from axum, pid {}\n", std::process::id())
}

/// Adds `Connection: close` to every response once lameduck has come.
async fn close_in_lameduck(
    State(lb): State<littleboss::Context>,
    mut response: Response,
) -> Response {
    if lb.is_lameduck() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A listener that accepts until lameduck, then never again.
struct UntilLameduck {
    inner: TcpListener,
    lb: littleboss::Context,
}

impl axum::serve::Listener for UntilLameduck {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            tokio::select! {
                _ = self.lb.lameduck() => std::future::pending::<()>().await,
                accepted = self.inner.accept() => match accepted {
                    Ok(accepted) => return accepted,
                    Err(e) => {
                        // Out of fds, most likely: back off instead of spinning.
                        eprintln!("axum-example: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
