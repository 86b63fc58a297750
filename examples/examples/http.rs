//! A small HTTP server that reloads without dropping a request.
//!
//! ```text
//! cargo run -p littleboss-examples --example http -- --littleboss=start &
//! curl localhost:8080/                               # pid 1234 exe /.../http
//! curl --http2-prior-knowledge localhost:8080/       # the same over HTTP/2 (h2c)
//! cargo run -p littleboss-examples --example http -- --littleboss=reload
//! cargo run -p littleboss-examples --example http -- --littleboss=stop
//! ```
//!
//! It answers `GET /` with its process id and executable, over HTTP/1.1 or HTTP/2.
//! `littleboss::http::serve` does what a reload needs to lose nothing: it stops
//! accepting at lameduck without touching the shared listener, and moves each idle
//! HTTP/1.1 keep-alive connection to the new process between two requests (the client
//! sees no close, and its next request is answered by the new pid); HTTP/2 clients get
//! a GOAWAY and their streams in flight finish; whatever cannot move closes with a
//! lingering close, all within the lameduck time.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};

#[littleboss::main(
    name = "http",
    listener(http = "tcp:127.0.0.1:8080"),
    calls_ready = true
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    // Arguments other than littleboss's are a mistake: refuse them before serving (which
    // says ready), so a reload with bad arguments fails and rolls back.
    if let Some(extra) = lb.args().get(1) {
        let message = format!("http takes no arguments of its own; got {extra:?}");
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            message,
        ));
    }
    let exe = std::env::current_exe()?;
    let greeting = Bytes::from(format!(
        "pid {} exe {}\n",
        std::process::id(),
        exe.display()
    ));
    let service = service_fn(move |_: Request<Incoming>| {
        let mut response = Response::new(Full::new(greeting.clone()));
        let plain = HeaderValue::from_static("text/plain");
        response.headers_mut().insert(CONTENT_TYPE, plain);
        async move { Ok::<_, Infallible>(response) }
    });
    littleboss::http::serve(&lb, "http", service).await
}
