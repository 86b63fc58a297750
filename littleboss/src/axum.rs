//! Serving an axum application the littleboss way, in one line (feature `axum`).
//!
//! ```no_run
//! use axum::Router;
//! use axum::routing::get;
//!
//! #[littleboss::main(name = "hello", listener(http = "tcp:127.0.0.1:8082"), calls_ready = true)]
//! async fn main(lb: littleboss::Context) -> std::io::Result<()> {
//!     let app = Router::new().route("/", get(|| async { "hello\n" }));
//!     littleboss::axum::serve(&lb, "http", app).await
//! }
//! ```
//!
//! It serves exactly as [`http::serve`](crate::http::serve) does: HTTP/1.1 and h2c,
//! TLS with `Server::tls` (feature `rustls`), and no request lost through a reload (see
//! [`crate::http`]). `axum::serve(listener, app).with_graceful_shutdown(lb.lameduck())`
//! alone keeps accepting until lameduck, then closes at once the connections that have
//! not sent their request yet and the idle keep-alive ones whose next request may be on
//! its way, and waits without a deadline for the rest.
//!
//! Handlers can extract:
//!
//! - `ConnectInfo<SocketAddr>`, the peer's address on a TCP listener (no
//!   `into_make_service_with_connect_info` needed);
//! - `Extension<littleboss::Context>`, for lameduck: a WebSocket handler
//!   (`axum::extract::ws`) selects on `lb.lameduck()` and closes the socket when it
//!   resolves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context as TaskContext, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;

use crate::Context;
use crate::http::Server;

/// Serves `app` (an `axum::Router`, a `MethodRouter`, or any service of axum's requests
/// and responses) on the listener named `listener`, until lameduck and the wind-down
/// after it are over, with the default [`Server`] options.
///
/// ```no_run
/// # use axum::{Router, routing::get};
/// #[littleboss::main(name = "hello", listener(http = "tcp:127.0.0.1:8082"), calls_ready = true)]
/// async fn main(lb: littleboss::Context) -> std::io::Result<()> {
///     let app = Router::new().route("/", get(|| async { "hello\n" }));
///     littleboss::axum::serve(&lb, "http", app).await
/// }
/// ```
///
/// Errors: only taking the listener fails, as with [`http::serve`](crate::http::serve).
pub async fn serve<S>(lb: &Context, listener: &str, app: S) -> std::io::Result<()>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    Server::new().serve_axum(lb, listener, app).await
}

impl Server {
    /// Serves the axum application `app` on the listener named `listener`, as
    /// [`axum::serve`](serve) does, with these options (feature `axum`).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use axum::{Router, routing::get};
    /// #[littleboss::main(name = "hello", listener(http = "tcp:127.0.0.1:8082"), lameduck = "10s")]
    /// async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    ///     let app = Router::new().route("/", get(|| async { "hello\n" }));
    ///     littleboss::http::Server::new()
    ///         .idle_grace(Duration::from_secs(3))
    ///         .serve_axum(&lb, "http", app)
    ///         .await
    /// }
    /// ```
    ///
    /// With the `rustls` feature, [`Server::tls`](crate::http::Server) serves it over
    /// TLS the same way.
    pub async fn serve_axum<S>(self, lb: &Context, listener: &str, app: S) -> std::io::Result<()>
    where
        S: tower_service::Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.run(lb, listener, move |peer| {
            hyper_util::service::TowerToHyperService::new(Axum {
                app: app.clone(),
                peer,
            })
        })
        .await
    }
}

/// An axum application as hyper's requests reach it: the body as axum's, and the
/// peer's address for `ConnectInfo`.
#[derive(Clone, Debug)]
struct Axum<S> {
    app: S,
    peer: Option<SocketAddr>,
}

impl<S> tower_service::Service<hyper::Request<Incoming>> for Axum<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, request: hyper::Request<Incoming>) -> S::Future {
        let mut request = request.map(axum::body::Body::new);
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        self.app.call(request)
    }
}
