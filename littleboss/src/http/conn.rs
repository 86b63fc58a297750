//! One connection, from accept to close: TLS, the protocol, hyper's connection, the
//! wind-down at lameduck (or standby, which winds connections down the same way), and
//! the lingering close; or, for an HTTP/1.1 connection (plaintext, or TLS whose session
//! can be taken) whose listener the new process adopts, the move to it.

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
use super::service::{ConnInfo, InFlight, Wrapped};
use crate::Context;
use crate::handoff::Moved;
use crate::http_counts::ListenerCounts;
#[cfg(feature = "rustls")]
use {
    super::TlsInfo,
    super::continued_tls::{ContinuedTls, Ending},
    super::tls_session::{self, Session},
    super::whole_records::WholeRecords,
    crate::secret::Secret,
    std::time::SystemTime,
};

/// What a connection says of itself to each of its requests: what its TLS handshake
/// said, if it is TLS (a request's `TlsInfo`).
pub(crate) trait Described {
    fn info(&self) -> ConnInfo {
        ConnInfo::default()
    }
}

impl Described for tokio::net::TcpStream {}

impl Described for tokio::net::UnixStream {}

#[cfg(feature = "rustls")]
impl<IO> Described for tokio_rustls::server::TlsStream<IO> {
    fn info(&self) -> ConnInfo {
        ConnInfo {
            tls: Some(TlsInfo::of(self.get_ref().1)),
        }
    }
}

#[cfg(feature = "rustls")]
impl<T> Described for ContinuedTls<T> {
    fn info(&self) -> ConnInfo {
        ConnInfo {
            tls: Some(TlsInfo::from_moved(self.handshake())),
        }
    }
}

#[cfg(feature = "rustls")]
impl<T> Described for Fresh<T> {
    fn info(&self) -> ConnInfo {
        self.tls.info()
    }
}

/// A plaintext connection that may move: a TCP or a unix stream, taken out of the
/// runtime as an fd to hand over, and back into it from one.
pub(crate) trait Movable:
    AsyncRead + AsyncWrite + Described + Unpin + Send + Sized + 'static
{
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
    /// Whether HTTP/1.1 connections (plaintext, or TLS of a suite that moves) move to
    /// the new process at a reload.
    pub hand_over: bool,
    /// The listener's counts for the supervisor's metrics, if they are kept.
    pub counts: Option<Arc<ListenerCounts>>,
    #[cfg(feature = "rustls")]
    pub tls: Option<(tokio_rustls::TlsAcceptor, Duration)>,
}

/// Serves one accepted TLS connection that does not move until it is closed.
#[cfg(feature = "rustls")]
pub(crate) async fn serve<IO, M, S, B>(io: IO, peer: Option<SocketAddr>, shared: Arc<Shared<M>>)
where
    IO: AsyncRead + AsyncWrite + Described + Unpin + Send + 'static,
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

/// A connection that may move, as it is served: a plaintext stream, a TLS session in
/// rustls, or a TLS session continued here after a move.
pub(crate) trait Carrier:
    AsyncRead + AsyncWrite + Described + Unpin + Send + 'static
{
    /// Whether it can be taken apart to move now that it is flushed: a TLS session
    /// between two records, of a suite that moves.
    fn can_move(&self) -> bool {
        true
    }

    /// Taken apart to move: its fd, `buffered` (plaintext read of it and not consumed)
    /// followed by the plaintext it had read and not given, and its TLS session.
    fn into_moved(self, buffered: Vec<u8>) -> Result<Moved, String>;

    /// When it must end, gracefully, if it must: a continued TLS session.
    #[cfg(feature = "rustls")]
    fn ending(&self) -> Option<Ending> {
        None
    }
}

impl<T: Movable> Carrier for T {
    fn into_moved(self, buffered: Vec<u8>) -> Result<Moved, String> {
        let fd = self.into_fd().map_err(|e| e.to_string())?;
        Ok(Moved {
            fd,
            buffered,
            tls: None,
        })
    }
}

#[cfg(feature = "rustls")]
impl<T: Movable> Carrier for ContinuedTls<T> {
    fn can_move(&self) -> bool {
        self.movable()
    }

    fn into_moved(self, buffered: Vec<u8>) -> Result<Moved, String> {
        let (io, session, plain) = self.into_session()?;
        moved_tls(io, &session, buffered, plain)
    }

    fn ending(&self) -> Option<Ending> {
        Some(ContinuedTls::ending(self))
    }
}

/// A TLS connection accepted here, in rustls, read in whole records so that its
/// session can move.
#[cfg(feature = "rustls")]
pub(crate) struct Fresh<T> {
    tls: tokio_rustls::server::TlsStream<WholeRecords<T>>,
    /// When its handshake was done.
    at: SystemTime,
}

#[cfg(feature = "rustls")]
impl<T: Movable> Carrier for Fresh<T> {
    fn can_move(&self) -> bool {
        let (records, conn) = self.tls.get_ref();
        records.between_records() && tls_session::can_take(conn)
    }

    fn into_moved(self, buffered: Vec<u8>) -> Result<Moved, String> {
        let (records, conn) = self.tls.into_inner();
        let (io, incoming) = records.into_parts();
        let (session, plain) = Session::take(conn, incoming, self.at)?;
        moved_tls(io, &session, buffered, plain)
    }
}

/// A TLS connection to move: its stream's fd, `buffered` then `plain` (what the
/// session opened and nobody read), and `session`, encoded.
#[cfg(feature = "rustls")]
fn moved_tls<T: Movable>(
    io: T,
    session: &Session,
    mut buffered: Vec<u8>,
    plain: Vec<u8>,
) -> Result<Moved, String> {
    buffered.extend(plain);
    let tls = session.encode()?;
    let fd = io.into_fd().map_err(|e| e.to_string())?;
    Ok(Moved {
        fd,
        buffered,
        tls: Some(tls),
    })
}

#[cfg(feature = "rustls")]
impl<T: Movable> AsyncRead for Fresh<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

#[cfg(feature = "rustls")]
impl<T: Movable> AsyncWrite for Fresh<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

/// Serves a connection accepted on a listener whose connections may move: plaintext, or
/// TLS (HTTP/1.1 on it may move to the next process at lameduck, HTTP/2 winds down).
pub(crate) async fn serve_movable<T, M, S, B>(
    stream: T,
    peer: Option<SocketAddr>,
    shared: Arc<Shared<M>>,
) where
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
    if let Some((acceptor, timeout)) = &shared.tls {
        if !shared.hand_over {
            Box::pin(serve(stream, peer, Arc::clone(&shared))).await;
            return;
        }
        let handshake = acceptor.accept(WholeRecords::new(stream));
        let Ok(Ok(tls)) = tokio::time::timeout(*timeout, handshake).await else {
            return;
        };
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            Box::pin(serve_http(tls, Proto::Http2, Vec::new(), peer, &shared)).await;
            return;
        }
        let fresh = Fresh {
            tls,
            at: SystemTime::now(),
        };
        let kept = Box::pin(serve_movable_once::<T, _, M, S, B>(
            fresh, None, peer, &shared,
        ))
        .await;
        return serve_kept::<T, M, S, B>(kept, peer, &shared).await;
    }
    if !shared.hand_over {
        Box::pin(http(stream, None, peer, &shared)).await;
        return;
    }
    let kept = Box::pin(serve_movable_once::<T, _, M, S, B>(
        stream, None, peer, &shared,
    ))
    .await;
    serve_kept::<T, M, S, B>(kept, peer, &shared).await;
}

/// Serves a connection handed in from the process before (the bytes it had read and
/// not parsed first; it speaks HTTP/1.1), plaintext or TLS, as one accepted here: it
/// may move again.
pub(crate) async fn serve_moved<T, M, S, B>(
    moved: Moved,
    peer: Option<SocketAddr>,
    shared: Arc<Shared<M>>,
) where
    T: Movable,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    serve_kept::<T, M, S, B>(Some(moved), peer, &shared).await;
}

/// Serves `kept` as one just accepted: a connection handed in, or one that was to move
/// when this process stood by and was not taken because the new one failed its
/// probation (it may move at the next reload); and so on while it comes back.
async fn serve_kept<T, M, S, B>(
    mut kept: Option<Moved>,
    peer: Option<SocketAddr>,
    shared: &Arc<Shared<M>>,
) where
    T: Movable,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    while let Some(moved) = kept.take() {
        let Ok(stream) = T::from_fd(moved.fd) else {
            return;
        };
        let read = (!moved.buffered.is_empty()).then_some(moved.buffered);
        kept = match moved.tls {
            None => {
                Box::pin(serve_movable_once::<T, _, M, S, B>(
                    stream, read, peer, shared,
                ))
                .await
            }
            #[cfg(feature = "rustls")]
            Some(session) => match continued(stream, &session) {
                Some(tls) => {
                    Box::pin(serve_movable_once::<T, _, M, S, B>(tls, read, peer, shared)).await
                }
                None => None,
            },
            #[cfg(not(feature = "rustls"))]
            Some(_) => None,
        };
    }
}

/// The session of a TLS connection that moved, continued over `stream`.
#[cfg(feature = "rustls")]
fn continued<T: Movable>(stream: T, session: &Secret) -> Option<ContinuedTls<T>> {
    let session = Session::decode(session).ok()?;
    ContinuedTls::resume(stream, session, Vec::new()).ok()
}

/// Serves HTTP/1.1 on `conn` until it ends, moves, or comes back (see [`serve_kept`]).
async fn serve_movable_once<T, C, M, S, B>(
    mut conn: C,
    read: Option<Vec<u8>>,
    peer: Option<SocketAddr>,
    shared: &Arc<Shared<M>>,
) -> Option<Moved>
where
    T: Movable,
    C: Carrier,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
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
                    Box::pin(serve_http(conn, Proto::Http2, read, peer, shared)).await;
                    return None;
                }
                Some(Proto::Http1) if draining || io::head_complete(&read) => break,
                _ => {}
            }
            tokio::select! {
                more = io::read_more(&mut conn, &mut read) => match more {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
                moves = moment.as_mut(), if !draining => {
                    // Not a partial HTTP/2 preface: it speaks HTTP/1.1, or nothing yet.
                    if moves && (read.is_empty() || proto.is_some()) {
                        return Box::pin(move_or_serve::<T, C, M, S, B>(conn, read, peer, shared)).await;
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
        conn,
        read,
        peer,
        shared,
        Arc::clone(&in_flight),
    ));
    let (conn, buffered) = movable.await?;
    Box::pin(move_or_serve::<T, C, M, S, B>(conn, buffered, peer, shared)).await
}

/// Hands an idle connection to the successor, or, if it does not take it (or it cannot
/// move: a TLS session in the middle of a record), serves it to the end here, winding
/// down as without a successor; or gives it back, with what was read of it, if this
/// process stood by and serves again since (the new one failed its probation): it is
/// served as one just accepted.
async fn move_or_serve<T, C, M, S, B>(
    mut conn: C,
    buffered: Vec<u8>,
    peer: Option<SocketAddr>,
    shared: &Shared<M>,
) -> Option<Moved>
where
    T: Movable,
    C: Carrier,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    // What TLS queued (a session ticket) is written before it is taken apart.
    if tokio::io::AsyncWriteExt::flush(&mut conn).await.is_err() {
        return None;
    }
    if !conn.can_move() {
        Box::pin(serve_to_end(conn, buffered, peer, shared)).await;
        return None;
    }
    let moving = conn.into_moved(buffered).ok()?;
    let Err(kept) = shared.lb.hand_over_moved(&shared.listener, moving).await else {
        return None;
    };
    if !shared.lb.is_winding_down() {
        return Some(kept);
    }
    let stream = T::from_fd(kept.fd).ok()?;
    // Boxed, as in `serve_movable`: what waits for the answer stays small.
    match kept.tls {
        None => Box::pin(serve_to_end(stream, kept.buffered, peer, shared)).await,
        #[cfg(feature = "rustls")]
        Some(session) => {
            let tls = continued(stream, &session)?;
            Box::pin(serve_to_end(tls, kept.buffered, peer, shared)).await;
        }
        #[cfg(not(feature = "rustls"))]
        Some(_) => {}
    }
    None
}

/// Serves HTTP/1.1 on a connection that does not move, `buffered` first, winding down.
async fn serve_to_end<IO, M, S, B>(
    io: IO,
    buffered: Vec<u8>,
    peer: Option<SocketAddr>,
    shared: &Shared<M>,
) where
    IO: AsyncRead + AsyncWrite + Described + Unpin + Send + 'static,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    if buffered.is_empty() {
        // Nothing read: it may not have said what it speaks yet.
        http(io, None, peer, shared).await;
    } else {
        serve_http(io, Proto::Http1, buffered, peer, shared).await;
    }
}

/// Serves HTTP/1.1 on a connection until it ends, or until lameduck if the
/// successor adopts its listener's connections: then, once no request is in flight
/// (hyper's own idle state is not exposed, and shutting a connection down between a
/// request and its response would add `Connection: close`), hyper lets go of it without
/// shutting it down. Returns the stream and what hyper had read of it and not parsed,
/// to move; `None` if it ended here (closed, upgraded, or wound down).
async fn http1_movable<C, M, S, B>(
    stream: C,
    read: Vec<u8>,
    peer: Option<SocketAddr>,
    shared: &Shared<M>,
    in_flight: Arc<InFlight>,
) -> Option<(C, Vec<u8>)>
where
    C: Carrier,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    let lb = &shared.lb;
    // A continued TLS session that must end (its age, its keys' limit) winds down as at
    // lameduck without a successor.
    #[cfg(feature = "rustls")]
    let ending = stream.ending();
    let must_end = async {
        #[cfg(feature = "rustls")]
        if let Some(ending) = &ending {
            return ending.reached().await;
        }
        std::future::pending::<()>().await;
    };
    let info = stream.info();
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
        info,
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
        () = must_end => Some(false),
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
    IO: AsyncRead + AsyncWrite + Described + Unpin + Send + 'static,
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
    IO: AsyncRead + AsyncWrite + Described + Unpin + Send + 'static,
    M: Fn(Option<SocketAddr>) -> S,
    S: ConnService<B>,
    B: ResBody,
{
    let lb = &shared.lb;
    let info = io.info();
    let (io, back) = Returning::new(Rewind::new(read, io));
    let io = TokioIo::new(io);
    let service = Wrapped {
        inner: (shared.make)(peer),
        lb: lb.clone(),
        http1: proto == Proto::Http1,
        moving: None,
        counts: shared.counts.clone(),
        info,
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
