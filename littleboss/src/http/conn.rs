//! One connection, from accept to close: TLS, the protocol, hyper's connection, the
//! wind-down at lameduck, and the lingering close.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::io::{Proto, Returning, Rewind, linger, sniff};
use super::service::Wrapped;
use crate::Context;

/// What every connection of one server shares.
pub(crate) struct Shared<M> {
    pub lb: Context,
    /// Makes the program's service for a connection from its peer's address.
    pub make: M,
    /// How long after lameduck an HTTP/1 connection may stay idle.
    pub idle_grace: Duration,
    pub linger: Duration,
    #[cfg(feature = "rustls")]
    pub tls: Option<(tokio_rustls::TlsAcceptor, Duration)>,
}

/// Serves one accepted connection until it is closed.
pub(crate) async fn serve<IO, M, S, B>(io: IO, peer: Option<SocketAddr>, shared: Arc<Shared<M>>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    M: Fn(Option<SocketAddr>) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    #[cfg(feature = "rustls")]
    if let Some((acceptor, timeout)) = &shared.tls {
        let Ok(Ok(stream)) = tokio::time::timeout(*timeout, acceptor.accept(io)).await else {
            return;
        };
        let proto = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Some(Proto::Http2),
            Some(b"http/1.1") => Some(Proto::Http1),
            _ => None,
        };
        return http(stream, proto, peer, &shared).await;
    }
    http(io, None, peer, &shared).await;
}

/// Resolves `grace` after lameduck.
async fn after_lameduck(lb: &Context, grace: Duration) {
    lb.lameduck().await;
    tokio::time::sleep(grace).await;
}

/// Serves HTTP on a connection: `proto` if TLS's ALPN chose it, else what its first
/// bytes say.
async fn http<IO, M, S, B>(
    mut io: IO,
    proto: Option<Proto>,
    peer: Option<SocketAddr>,
    shared: &Shared<M>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    M: Fn(Option<SocketAddr>) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let lb = &shared.lb;
    let (proto, read) = match proto {
        Some(proto) => (proto, Vec::new()),
        None => {
            let sniffed = tokio::select! {
                sniffed = sniff(&mut io) => sniffed,
                // It sent nothing, even within the grace period after lameduck.
                _ = after_lameduck(lb, shared.idle_grace) => return,
            };
            match sniffed {
                Ok(Some(sniffed)) => sniffed,
                Ok(None) | Err(_) => return,
            }
        }
    };
    let (io, back) = Returning::new(Rewind::new(read, io));
    let io = TokioIo::new(io);
    let service = Wrapped {
        inner: (shared.make)(peer),
        lb: lb.clone(),
        http1: proto == Proto::Http1,
    };
    match proto {
        Proto::Http1 => {
            // No timer: hyper's header read timeout would also close keep-alive
            // connections that are idle between requests, the race this avoids.
            let connection = http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                // During lameduck every response says `Connection: close`, so a
                // connection still open after the grace period has sent no request
                // since: close it if idle, else after the response in flight.
                _ = after_lameduck(lb, shared.idle_grace) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
        }
        Proto::Http2 => {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new()).enable_connect_protocol();
            let connection = builder.serve_connection(io, service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                // GOAWAY, then the streams in flight finish.
                _ = lb.lameduck() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
        }
    }
    // The stream comes back once hyper has dropped it, or, after an upgrade, once the
    // program has.
    if let Ok(io) = back.await {
        linger(io, shared.linger).await;
    }
}
