//! A small HTTP/1.1 server that reloads without dropping a request.
//!
//! ```text
//! cargo run -p littleboss-examples --example http -- --littleboss=start &
//! curl localhost:8080/            # pid 1234 exe /.../http
//! cargo run -p littleboss-examples --example http -- --littleboss=reload
//! cargo run -p littleboss-examples --example http -- --littleboss=stop
//! ```
//!
//! It answers `GET /` with its process id and executable. It winds down the way a
//! server must for a reload to lose nothing:
//!
//! - On lameduck it stops accepting by dropping its listener (never `shutdown()` on it:
//!   the socket is shared with the new process, which keeps accepting from it).
//! - Each connection's next request is answered with `Connection: close`, so clients
//!   that keep connections alive move to the new process between requests, never in
//!   the middle of one.
//! - A connection that sends nothing is closed only after a grace period, so a request
//!   already on its way on an idle keep-alive connection, or on a connection accepted
//!   just before lameduck, is still answered. (hyper's graceful shutdown alone closes
//!   such connections at once.)

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

/// How long a connection that sends nothing is kept open after lameduck.
const IDLE_GRACE: Duration = Duration::from_secs(1);

#[littleboss::main(
    name = "http",
    listener(http = "tcp:127.0.0.1:8080"),
    calls_ready = true
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    // Arguments other than littleboss's are a mistake: refuse them before serving, so a
    // reload with bad arguments fails and rolls back.
    if let Some(extra) = lb.args().get(1) {
        let message = format!("http takes no arguments of its own; got {extra:?}");
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            message,
        ));
    }
    let listener = lb.tcp_listener("http")?;
    let exe = std::env::current_exe()?;
    let greeting = Bytes::from(format!(
        "pid {} exe {}\n",
        std::process::id(),
        exe.display()
    ));
    // Serve one request in memory before saying ready, so that the first real one is
    // not the one that pays for a cold process: the old process keeps serving until then.
    warm_up(lb.clone(), greeting.clone()).await;
    lb.ready();

    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = lb.lameduck() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve(stream, lb.clone(), greeting.clone()));
                }
                Err(e) => {
                    // Out of fds, most likely: back off instead of spinning.
                    eprintln!("http: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Stop accepting: the new process takes the connections still in the queue.
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Runs one request through the server over an in-memory pipe.
async fn warm_up(lb: littleboss::Context, greeting: Bytes) {
    let (mut client, server) = tokio::io::duplex(4096);
    let server = tokio::spawn(serve(server, lb, greeting));
    let _ = client
        .write_all(b"GET / HTTP/1.1\r\nHost: warm-up\r\nConnection: close\r\n\r\n")
        .await;
    let mut response = Vec::new();
    let _ = client.read_to_end(&mut response).await;
    let _ = server.await;
}

/// Serves one connection until the client closes it, or until lameduck plus the grace
/// period has passed without a request in flight.
async fn serve<S>(stream: S, lb: littleboss::Context, greeting: Bytes)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_lb = lb.clone();
    let service = service_fn(move |_request: Request<Incoming>| {
        let mut response = Response::new(Full::new(greeting.clone()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        if service_lb.is_lameduck() {
            // hyper closes the connection after this response.
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let lameduck = lb.lameduck();
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = async { lameduck.await; tokio::time::sleep(IDLE_GRACE).await } => {}
    }
    // Past the grace period: finish what is in flight, then close.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
