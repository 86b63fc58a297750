//! One connection, from accept to close: TLS, the protocol, hyper's connection, the
//! wind-down at lameduck (or standby, which winds connections down the same way), and
//! the lingering close; or, for a plaintext HTTP/1.1
//! connection whose listener the new process adopts, the move to it.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::framing::Framing;
use super::io::{self, Proto, Returning, Rewind, linger, sniff};
use super::service::{InFlight, Wrapped};
use crate::Context;
use crate::handoff::Moved;
use crate::http_counts::ListenerCounts;

/// A plaintext connection that may move: a TCP or a unix stream, taken out of the
/// runtime as an fd to hand over, and back into it from one.
pub(crate) trait Movable: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    /// The fd, out of the runtime (left non-blocking).
    fn into_fd(self) -> std::io::Result<OwnedFd>;
    /// A stream of the runtime from a non-blocking fd.
    fn from_fd(fd: OwnedFd) -> std::io::Result<Self>;
}

impl Movable for tokio::net::TcpStream {
    fn into_fd(self) -> std::io::Result<OwnedFd> {
        self.into_std().map(OwnedFd::from)
    }

    fn from_fd(fd: OwnedFd) -> std::io::Result<Self> {
        tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd))
    }
}

impl Movable for tokio::net::UnixStream {
    fn into_fd(self) -> std::io::Result<OwnedFd> {
        self.into_std().map(OwnedFd::from)
    }

    fn from_fd(fd: OwnedFd) -> std::io::Result<Self> {
        tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))
    }
}

/// The service of one connection, as hyper runs it on a spawned task: the bounds every
/// function here needs, in one place.
pub(crate) trait ConnService<B>:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<Box<dyn StdError + Send + Sync>>,
    > + Send
    + 'static
{
}

impl<S, B> ConnService<B> for S where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<B>,
            Future: Send + 'static,
            Error: Into<Box<dyn StdError + Send + Sync>>,
        > + Send
        + 'static
{
}

/// The body of a response of a [`ConnService`].
pub(crate) trait ResBody:
    hyper::body::Body<Data: Send, Error: Into<Box<dyn StdError + Send + Sync>>> + Send + 'static
{
}

impl<B> ResBody for B where
    B: hyper::body::Body<Data: Send, Error: Into<Box<dyn StdError + Send + Sync>>> + Send + 'static
{
}

/// What every connection of one server shares.
pub(crate) struct Shared<M> {
    pub lb: Context,
    /// Makes the program's service for a connection from its peer's address.
    pub make: M,
    /// How long after lameduck an HTTP/1 connection may stay idle.
    pub idle_grace: Duration,
    pub linger: Duration,
    /// The listener's name, for moving its connections.
    pub listener: Arc<str>,
    /// Whether plaintext HTTP/1.1 connections move to the new process at a reload.
    pub hand_over: bool,
    /// The listener's counts for the supervisor's metrics, if they are kept.
    pub counts: Option<Arc<ListenerCounts>>,
    #[cfg(feature = "rustls")]
    pub tls: Option<(tokio_rustls::TlsAcceptor, Duration)>,
}

/// Serves one accepted TLS connection until it is closed.
#[cfg(feature = "rustls")]
pub(crate) async fn serve<IO, M, S, B>(io: IO, peer: Option<SocketAddr>, shared: Arc<Shared<M>>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
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

/// Serves a plaintext connection (TCP or unix), accepted (`read` empty) or handed in
/// from the process before (`read`: the bytes it had read and not parsed, and it speaks
/// HTTP/1.1): HTTP/1.1 on it may move to the next process at lameduck.
pub(crate) async fn serve_movable<T, M, S, B>(
    mut stream: T,
    mut read: Option<Vec<u8>>,
    peer: Option<SocketAddr>,
    shared: Arc<Shared<M>>,
) where
    T: Movable,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    // A connection that was to move when this process stood by, and was not taken
    // because the new one failed its probation, is served again as one just
    // accepted: it may move at the next reload.
    while let Some((again, buffered)) =
        Box::pin(serve_movable_once(stream, read, peer, &shared)).await
    {
        stream = again;
        read = (!buffered.is_empty()).then_some(buffered);
    }
}

/// [`serve_movable`] until the connection ends, or comes back (see there).
async fn serve_movable_once<T, M, S, B>(
    mut stream: T,
    read: Option<Vec<u8>>,
    peer: Option<SocketAddr>,
    shared: &Arc<Shared<M>>,
) -> Option<(T, Vec<u8>)>
where
    T: Movable,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    // What follows the first bytes (hyper's connection, a move) is boxed: an idle
    // connection, as thousands of them are at a move, waits in a task of a few hundred
    // bytes instead of one the size of hyper's connection, whose memory the process
    // would have to fault in for each.
    #[cfg(feature = "rustls")]
    if shared.tls.is_some() {
        Box::pin(serve(stream, peer, Arc::clone(shared))).await;
        return None;
    }
    if !shared.hand_over {
        Box::pin(http(stream, None, peer, shared)).await;
        return None;
    }
    let lb = &shared.lb;
    let in_flight = Arc::new(InFlight::default());
    // Until a whole request head has come, the connection is this task's, and at
    // lameduck it moves with what was read: hyper, given part of a first request, would
    // finish it itself and answer `Connection: close`.
    let mut read = read.unwrap_or_default();
    // In a block of its own, so that its waits on lameduck are gone once a request
    // head has come: at lameduck each connection then wakes once, not three times.
    {
        let moment = async {
            lb.winding_down().await;
            in_flight.moves(lb, &shared.listener)
        };
        let mut moment = std::pin::pin!(moment);
        let grace = after_lameduck(lb, shared.idle_grace);
        let mut grace = std::pin::pin!(grace);
        let mut draining = false;
        loop {
            let proto = io::classify(&read);
            match proto {
                Some(Proto::Http2) => {
                    Box::pin(serve_http(stream, Proto::Http2, read, peer, shared)).await;
                    return None;
                }
                Some(Proto::Http1) if draining || io::head_complete(&read) => break,
                _ => {}
            }
            tokio::select! {
                more = io::read_more(&mut stream, &mut read) => match more {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
                moves = moment.as_mut(), if !draining => {
                    // Not a partial HTTP/2 preface: it speaks HTTP/1.1, or nothing yet.
                    if moves && (read.is_empty() || proto.is_some()) {
                        return Box::pin(move_or_serve(stream, read, peer, shared)).await;
                    }
                    draining = true;
                }
                // It did not say what it speaks, even within the grace period after
                // lameduck.
                _ = grace.as_mut(), if proto.is_none() => return None,
            }
        }
    }
    let movable = Box::pin(http1_movable(
        stream,
        read,
        peer,
        shared,
        Arc::clone(&in_flight),
    ));
    let (stream, buffered) = movable.await?;
    Box::pin(move_or_serve(stream, buffered, peer, shared)).await
}

/// Hands an idle connection to the successor, or, if it does not take it, serves it
/// to the end here, winding down as without a successor; or gives it back, with what
/// was read of it, if this process stood by and serves again since (the new one failed
/// its probation): it is served as one just accepted.
async fn move_or_serve<T, M, S, B>(
    stream: T,
    buffered: Vec<u8>,
    peer: Option<SocketAddr>,
    shared: &Shared<M>,
) -> Option<(T, Vec<u8>)>
where
    T: Movable,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    let fd = stream.into_fd().ok()?;
    let moving = Moved { fd, buffered };
    let Err(kept) = shared.lb.hand_over_moved(&shared.listener, moving).await else {
        return None;
    };
    let stream = T::from_fd(kept.fd).ok()?;
    if !shared.lb.is_winding_down() {
        return Some((stream, kept.buffered));
    }
    // Boxed, as in `serve_movable`: what waits for the answer stays small.
    if kept.buffered.is_empty() {
        // Nothing read: it may not have said what it speaks yet.
        Box::pin(http(stream, None, peer, shared)).await;
    } else {
        Box::pin(serve_http(
            stream,
            Proto::Http1,
            kept.buffered,
            peer,
            shared,
        ))
        .await;
    }
    None
}

/// Serves HTTP/1.1 on a plaintext connection until it ends, or until lameduck if the
/// successor adopts its listener's connections: then, once no request is in flight
/// (hyper's own idle state is not exposed, and shutting a connection down between a
/// request and its response would add `Connection: close`), hyper lets go of it without
/// shutting it down. Returns the stream and what hyper had read of it and not parsed,
/// to move; `None` if it ended here (closed, upgraded, or wound down).
async fn http1_movable<T, M, S, B>(
    stream: T,
    read: Vec<u8>,
    peer: Option<SocketAddr>,
    shared: &Shared<M>,
    in_flight: Arc<InFlight>,
) -> Option<(T, Vec<u8>)>
where
    T: Movable,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    let lb = &shared.lb;
    // Every byte hyper reads is counted, so that at a move the stream is known to be at
    // a request's boundary (see `framing`).
    let framing = Arc::new(Mutex::new(Framing::default()));
    let (io, back) = Returning::new(Rewind::framed(read, stream, Arc::clone(&framing)));
    let kept = io.kept();
    let service = Wrapped {
        inner: (shared.make)(peer),
        lb: lb.clone(),
        http1: true,
        moving: Some((Arc::clone(&shared.listener), Arc::clone(&in_flight))),
        counts: shared.counts.clone(),
    };
    // No timer, as in `http`.
    let mut connection = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let then = async {
        lb.winding_down().await;
        if in_flight.moves(lb, &shared.listener) {
            in_flight.idle().await;
            // At a request's boundary, which hyper does not close: it moves. Else it
            // winds down as it would without a successor.
            if in_flight.reusable() {
                return true;
            }
        }
        tokio::time::sleep(shared.idle_grace).await;
        false
    };
    let moves = tokio::select! {
        _ = &mut connection => None,
        moves = then => Some(moves),
    };
    match moves {
        None => {}
        Some(false) => {
            std::pin::Pin::new(&mut connection).graceful_shutdown();
            let _ = (&mut connection).await;
        }
        Some(true) => {
            // Idle: hyper closes it at once, flushing what it wrote, and its shutdown of
            // the stream does nothing.
            kept.store(true, std::sync::atomic::Ordering::SeqCst);
            std::pin::Pin::new(&mut connection).graceful_shutdown();
            if (&mut connection).await.is_ok() {
                // `None` if it was upgraded meanwhile: the program has it.
                let parts = connection.into_parts()?;
                let io = parts.io.into_inner().take()?;
                // What hyper had not consumed of a body the service left unread (it
                // drains what has come before it keeps a connection alive) is
                // skipped; a body whose end has not been read yet cannot move.
                let skip = skip_to_boundary(&framing, parts.read_buf.len());
                let (rest, stream) = io.into_parts();
                let Some(skip) = skip else {
                    linger(stream, shared.linger).await;
                    return None;
                };
                let mut buffered = parts.read_buf[skip..].to_vec();
                buffered.extend(rest);
                return Some((stream, buffered));
            }
        }
    }
    drop(connection);
    if let Ok(io) = back.await {
        linger(io, shared.linger).await;
    }
    None
}

/// How many of hyper's `unparsed` bytes to skip so that what follows begins a request
/// (the rest of a body the service left unread, which hyper had read and not
/// consumed), or `None` if no boundary between requests has been read after what hyper
/// consumed.
fn skip_to_boundary(framing: &Mutex<Framing>, unparsed: usize) -> Option<usize> {
    let framing = framing
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let consumed = framing.total().checked_sub(unparsed as u64)?;
    let boundary = framing.boundary_from(consumed)?;
    usize::try_from(boundary - consumed).ok()
}

/// Resolves `grace` after lameduck (or standby: the connections wind down the same).
async fn after_lameduck(lb: &Context, grace: Duration) {
    lb.winding_down().await;
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
    S: ConnService<B>,
    B: ResBody,
{
    let (proto, read) = match proto {
        Some(proto) => (proto, Vec::new()),
        None => {
            let mut read = Vec::new();
            let sniffed = tokio::select! {
                sniffed = sniff(&mut io, &mut read) => sniffed,
                // It sent nothing, even within the grace period after lameduck.
                _ = after_lameduck(&shared.lb, shared.idle_grace) => return,
            };
            match sniffed {
                Ok(Some(proto)) => (proto, read),
                Ok(None) | Err(_) => return,
            }
        }
    };
    serve_http(io, proto, read, peer, shared).await;
}

/// Serves `proto` on a connection, `read` first, winding down at lameduck (it does not
/// move), then closes it with a lingering close.
async fn serve_http<IO, M, S, B>(
    io: IO,
    proto: Proto,
    read: Vec<u8>,
    peer: Option<SocketAddr>,
    shared: &Shared<M>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    let lb = &shared.lb;
    let (io, back) = Returning::new(Rewind::new(read, io));
    let io = TokioIo::new(io);
    let service = Wrapped {
        inner: (shared.make)(peer),
        lb: lb.clone(),
        http1: proto == Proto::Http1,
        moving: None,
        counts: shared.counts.clone(),
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
                _ = lb.winding_down() => {
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
