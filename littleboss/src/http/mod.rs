//! Serving HTTP the littleboss way: a hyper service on a declared listener, in one
//! line, that loses no request through reloads (feature `hyper`; `littleboss::axum` does
//! the same for axum).
//!
//! The example needs these dependencies (hyper's service and body types, and the
//! runtime the attribute starts):
//!
//! ```toml
//! [dependencies]
//! littleboss = { git = "https://github.com/littleboss-rs/littleboss", features = ["hyper"] }
//! hyper = "1"
//! http-body-util = "0.1"
//! tokio = { version = "1", features = ["full"] }
//! ```
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{Request, Response};
//!
//! async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from("hello\n"))))
//! }
//!
//! #[littleboss::main(name = "hello", listener(http = "tcp:127.0.0.1:8080"), calls_ready = true)]
//! async fn main(lb: littleboss::Context) -> std::io::Result<()> {
//!     littleboss::http::serve(&lb, "http", hyper::service::service_fn(hello)).await
//! }
//! ```
//!
//! # What it does
//!
//! It takes the listener by name from the [`Context`] (a `tcp` or a `unix` one), says
//! [`ready`](Context::ready), and serves every connection with hyper's own HTTP/1.1 and
//! HTTP/2 connections: HTTP/2 with prior knowledge (h2c) is told from HTTP/1.1 by the
//! 24-byte preface it starts with, and over TLS by ALPN. Then at lameduck:
//!
//! - It stops accepting by dropping its copy of the listener. The listening socket is
//!   shared with the new process, which goes on accepting from the same queue: it is
//!   never `shutdown()`, which would stop the new process's accepts too.
//! - HTTP/1.1, in plain text or TLS, over TCP or a unix socket, when the new process
//!   serves the same listener with these helpers: each connection moves to it, socket
//!   and all (and its TLS session), as soon as it is between two requests. The client sees no close and no
//!   `Connection: close`; see [Handing over idle
//!   connections](#handing-over-idle-connections).
//! - HTTP/1.1 otherwise (a stop, a new process that does not adopt connections,
//!   [`Server::hand_over`] off, a TLS session that cannot move): each connection's next response
//!   carries `Connection: close`, and the connection closes after it, so keep-alive
//!   clients move to the new process between two requests, never during one. A
//!   connection that sends nothing is closed only after a grace period
//!   ([`Server::idle_grace`], 1 s), so a request already on its way (on an idle
//!   keep-alive connection, or on a connection accepted just before lameduck) is still
//!   answered.
//! - HTTP/2: GOAWAY at once (the two-step shutdown of RFC 9113, section 6.8), then the
//!   streams in flight finish; a client sends its new streams elsewhere, and retries a
//!   stream above the GOAWAY's last stream id, which the server never saw.
//! - Every connection is closed with a lingering close: the write side is shut down,
//!   then what the peer still sends is read and dropped until it closes too or
//!   [`Server::linger`] (1 s) passes, because closing a socket with unread input sends
//!   an RST, which can destroy a response the peer has not read yet.
//! - It all fits in the lameduck time ([`Context::lameduck_time`]): the grace period is
//!   at most half of it, and whatever is still open shortly before it ends (a tenth of
//!   it before, 250 ms at most) is closed, so that `serve` returns and the program exits
//!   on its own before the supervisor would kill it.
//!
//! Before lameduck, accept errors are retried: those that concern one connection at
//! once, those of a process out of file descriptors or memory (`EMFILE`, `ENFILE`,
//! `ENOBUFS`, `ENOMEM`) after a pause of 5 ms that doubles up to 1 s, printed once.
//!
//! Every request carries the [`Context`] in its extensions
//! (`request.extensions().get::<littleboss::Context>()`), so that the program's code
//! sees lameduck too; over TLS, also what the handshake said (`TlsInfo`: the server
//! name, the ALPN protocol, the client's certificates), the same after the connection
//! moved to a new process.
//!
//! # Handing over idle connections
//!
//! Closing an idle keep-alive connection always races with a request the client may be
//! sending on it at that moment; closing later only moves the race. So a plaintext
//! HTTP/1.1 connection, of a TCP or a unix listener, is not closed at a reload: it moves
//! to the new process.
//!
//! - The new process's `serve` says that it adopts the listener's connections before it
//!   says ready ([`Context::adopt`]).
//! - At lameduck, the old process's `serve` waits until a connection has no request in
//!   flight (its last response written in full): hyper exposes no idle state, and
//!   stopping a connection between a request and its response would make that response
//!   say `Connection: close`. Then it takes the socket back from hyper with the bytes
//!   hyper had read and not parsed (the start of the next request, if the client was
//!   sending one), and hands both over ([`Context::hand_over`]); a TLS connection, with
//!   its session (see [TLS connections](#tls-connections)).
//! - The new process serves it as if it had accepted it, those bytes first. A request
//!   sent while the connection was on its way waits in the kernel's buffer and is
//!   answered by the new process.
//! - The old process exits as soon as its connections have moved, not after the
//!   lameduck time.
//!
//! A connection whose first request has only begun (its head not whole yet) moves with
//! those bytes before hyper sees them: hyper, given part of a first request, would
//! finish it itself and answer `Connection: close`.
//!
//! A connection whose last request carried a body moves once that body is behind it:
//! read by the service, or left unread and drained by hyper (which it does with what
//! has come of the body when the service answers). The helper counts every byte hyper
//! reads and frames the requests itself (`Content-Length`, or chunks and trailers), so
//! that it moves the connection only at a request's boundary: what is left of a body
//! never reaches the new process as a request. A body whose end has not come when the
//! service answers is hyper's to close, as without littleboss.
//!
//! What cannot move winds down by closing, as above: HTTP/2 (which has GOAWAY),
//! upgraded connections, a TLS session that cannot move (below), a connection whose
//! last request was HTTP/1.0 or said `Connection: close`, one whose requests cannot be
//! framed for certain (`CONNECT`, a transfer coding other than `chunked`, a
//! `Content-Length` that is not one number), one whose last response said
//! `Connection: close`, one holding more than 16 KiB not parsed yet (40 KiB with its
//! session, for TLS), a request still in flight when the lameduck time is up, and
//! whatever the new process did not take in time. Nothing is dropped on any of these
//! paths while the supervisor runs (if it dies, a connection on its way may be lost).
//! Under a supervisor of an earlier release, or with [`Server::hand_over`] off, every
//! connection winds down by closing; TLS connections do under a supervisor, or with a
//! new process, of a release before protocol 7.
//!
//! # TLS connections
//!
//! rustls cannot be rebuilt from a session's keys, so a TLS connection moves as its
//! socket and its session, continued in the new process by a record layer of these
//! helpers (with `ring::aead`, per RFC 8446 section 5 and RFC 5246 section 6.2):
//!
//! - rustls reads the socket through a wrapper that gives it whole records only, so
//!   that between two records it holds no ciphertext;
//! - at the move, what rustls queued is flushed and the session taken out of it
//!   (`dangerous_extract_secrets`, on a copy of the program's config with
//!   `enable_secret_extraction` set): both directions' keys, IVs and sequence numbers,
//!   the plaintext not read yet, what came of a record not whole yet, and the SNI,
//!   ALPN protocol and client certificates (the requests' `TlsInfo`). It travels with
//!   the socket as a secret: zeroed when dropped, never printed, relayed by the
//!   supervisor unread;
//! - the new process serves HTTP/1.1 on it as on any connection, and at the next
//!   reload moves it on; a session that comes back (not taken, or moved back at a
//!   probation's rollback) is served here with the same record layer.
//!
//! Sessions of the suites of rustls's ring provider (TLS 1.3 with AES-128-GCM,
//! AES-256-GCM or ChaCha20-Poly1305, TLS 1.2 with ECDHE and AES-GCM or
//! ChaCha20-Poly1305) move. A session of another provider (a `Tls::from_config` built
//! on aws-lc-rs, say: its program chose not to have ring protect its records), or of
//! another suite, winds down by closing.
//!
//! A moved session lives by the rules it can keep: it has its keys, not the secrets
//! they came from, so it cannot renew them. A `KeyUpdate` from the client ends it with
//! an `internal_error` alert, a TLS 1.2 renegotiation gets `no_renegotiation` and ends
//! it, a `close_notify` is answered with one. It winds down gracefully (as at lameduck
//! without a successor) 65,536 records before its keys' confidentiality limit (at half
//! of a smaller one), and 24 hours after its handshake.
//!
//! # Upgrades and WebSockets
//!
//! HTTP/1.1 upgrades (and HTTP/2's extended CONNECT) work as in hyper: a service that
//! answers `101 Switching Protocols` gets the connection from `hyper::upgrade::on`, and
//! from then on it is the program's. littleboss cannot tell what a WebSocket is in the
//! middle of, so the program winds it down itself: select on
//! [`lameduck`](Context::lameduck) in the task that owns the upgraded connection, and
//! send a close frame when it resolves (the client reconnects, to the new process).
//! `serve` waits for upgraded connections too, until the lameduck time is nearly up.
//! An upgraded connection does not move to the new process (hyper's upgrades and
//! taking a connection back from hyper do not mix): a connection is served with
//! upgrades on, and moves only if no upgrade has happened on it by the time it is idle
//! in lameduck.
//!
//! ```no_run
//! # use std::convert::Infallible;
//! # use http_body_util::Empty;
//! # use hyper::body::{Bytes, Incoming};
//! # use hyper::{Request, Response, StatusCode};
//! async fn upgrade(mut request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
//!     let lb = request.extensions().get::<littleboss::Context>().cloned();
//!     let on_upgrade = hyper::upgrade::on(&mut request);
//!     tokio::spawn(async move {
//!         let Ok(upgraded) = on_upgrade.await else { return };
//!         let Some(lb) = lb else { return };
//!         tokio::select! {
//!             _ = lb.lameduck() => { /* send a close frame, then drop `upgraded` */ }
//!             _ = async { /* speak the new protocol on `upgraded` */ } => {}
//!         }
//!         drop(upgraded);
//!     });
//!     let mut response = Response::new(Empty::new());
//!     *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
//!     // ... and the `Upgrade` / `Connection: upgrade` headers of the protocol.
//!     Ok(response)
//! }
//! ```
//!
//! # TLS
//!
//! With the `rustls` feature, `Server::tls` serves TLS (tokio-rustls, with ring as the
//! crypto provider) from a certificate chain and key in PEM files (`Tls`), with ALPN
//! `h2` and `http/1.1`; handshakes are bounded by `Server::tls_handshake_timeout`.
#![cfg_attr(
    feature = "rustls",
    doc = "See [`Tls`] and [`Server::tls`] for an example."
)]

mod conn;
// TLS connections that move: a session taken from rustls, continued outside it with a
// record layer of its own.
#[cfg(feature = "rustls")]
mod continued_tls;
mod framing;
mod io;
#[cfg(feature = "rustls")]
mod record_layer;
mod service;
#[cfg(feature = "rustls")]
mod tls;
#[cfg(feature = "rustls")]
mod tls_session;
#[cfg(feature = "rustls")]
mod whole_records;

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::task::JoinSet;

use self::conn::{ConnService, ResBody};
use crate::Context;
use crate::handoff::Moved;
use crate::http_counts::open_while;
use crate::output::errln;

#[cfg(feature = "rustls")]
pub use self::tls::{Tls, TlsError, TlsInfo};
/// The rustls crate [`Tls::from_config`] takes a configuration of (feature `rustls`).
#[cfg(feature = "rustls")]
pub use tokio_rustls::rustls;

/// Serves `service` on the listener named `listener`, until lameduck and the wind-down
/// after it are over, with the default [`Server`] options: see the [module
/// documentation](self).
///
/// ```no_run
/// # use std::convert::Infallible;
/// # use http_body_util::Full;
/// # use hyper::body::{Bytes, Incoming};
/// # use hyper::{Request, Response};
/// #[littleboss::main(name = "hello", listener(http = "tcp:127.0.0.1:8080"), calls_ready = true)]
/// async fn main(lb: littleboss::Context) -> std::io::Result<()> {
///     let hello = hyper::service::service_fn(|_: Request<Incoming>| async {
///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello\n"))))
///     });
///     littleboss::http::serve(&lb, "http", hello).await
/// }
/// ```
///
/// Errors: only taking the listener fails (an undeclared name, a listener that is off,
/// taken already, or a UDP one); what happens to one connection is that connection's.
pub async fn serve<S, B>(lb: &Context, listener: &str, service: S) -> std::io::Result<()>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    Server::new().serve(lb, listener, service).await
}

/// The options of [`serve`] (and of `littleboss::axum::serve`), for a server
/// that needs other than the defaults or TLS.
///
/// ```no_run
/// # use std::convert::Infallible;
/// # use std::time::Duration;
/// # use http_body_util::Full;
/// # use hyper::body::{Bytes, Incoming};
/// # use hyper::{Request, Response};
/// #[littleboss::main(name = "hello", listener(http = "tcp:127.0.0.1:8080"), lameduck = "5s")]
/// async fn main(lb: littleboss::Context) -> std::io::Result<()> {
///     let hello = hyper::service::service_fn(|_: Request<Incoming>| async {
///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello\n"))))
///     });
///     littleboss::http::Server::new()
///         .idle_grace(Duration::from_secs(2))
///         .serve(&lb, "http", hello)
///         .await
/// }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Server does nothing until `serve` is called"]
pub struct Server {
    idle_grace: Duration,
    linger: Duration,
    ready: bool,
    hand_over: bool,
    #[cfg(feature = "rustls")]
    tls: Option<Tls>,
    #[cfg(feature = "rustls")]
    tls_handshake_timeout: Duration,
}

impl Default for Server {
    fn default() -> Server {
        Server::new()
    }
}

impl Server {
    /// The defaults: a grace period of 1 s, a lingering close of at most 1 s, `ready`
    /// said once the listener is taken, plain TCP (no TLS).
    pub fn new() -> Server {
        Server {
            idle_grace: Duration::from_secs(1),
            linger: Duration::from_secs(1),
            ready: true,
            hand_over: true,
            #[cfg(feature = "rustls")]
            tls: None,
            #[cfg(feature = "rustls")]
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }

    /// How long after lameduck an HTTP/1.1 connection that sends nothing is kept open,
    /// when it does not move to the new process (default 1 s): a request already on its
    /// way on it is still answered. At most half the lameduck time is used, so that the
    /// request has time to be answered.
    pub fn idle_grace(mut self, grace: Duration) -> Server {
        self.idle_grace = grace;
        self
    }

    /// The longest a closing connection is read for its peer to close too, after its
    /// write side is shut down (default 1 s).
    pub fn linger(mut self, linger: Duration) -> Server {
        self.linger = linger;
        self
    }

    /// Whether [`serve`](Self::serve) calls [`Context::ready`] once it has taken its
    /// listener (default `true`). A program that must do more before it is ready (serve
    /// a second listener, warm a cache) turns this off and calls `ready` itself.
    pub fn ready(mut self, ready: bool) -> Server {
        self.ready = ready;
        self
    }

    /// Whether idle HTTP/1.1 connections move to the new process at a reload (default
    /// `true`): see [handing over](self#handing-over-idle-connections), and [TLS
    /// connections](self#tls-connections). Off, every connection winds down by closing,
    /// as a server does without littleboss's help, and the TLS config is used as it is
    /// (without `enable_secret_extraction`).
    pub fn hand_over(mut self, hand_over: bool) -> Server {
        self.hand_over = hand_over;
        self
    }

    /// Serves TLS with `tls` (feature `rustls`): HTTP/2 or HTTP/1.1 as the client's
    /// ALPN chooses.
    ///
    /// ```no_run
    /// # use std::convert::Infallible;
    /// # use http_body_util::Full;
    /// # use hyper::body::{Bytes, Incoming};
    /// # use hyper::{Request, Response};
    /// # async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    /// #     Ok(Response::new(Full::new(Bytes::from("hello\n"))))
    /// # }
    /// #[littleboss::main(name = "hello", listener(https = "tcp:127.0.0.1:8443"), calls_ready = true)]
    /// async fn main(lb: littleboss::Context) -> Result<(), Box<dyn std::error::Error>> {
    ///     // Before serving (which says ready), so that a reload to a bad certificate
    ///     // fails and rolls back.
    ///     let tls = littleboss::http::Tls::from_pem_files("cert.pem", "key.pem")?;
    ///     littleboss::http::Server::new()
    ///         .tls(tls)
    ///         .serve(&lb, "https", hyper::service::service_fn(hello))
    ///         .await?;
    ///     Ok(())
    /// }
    /// ```
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, tls: Tls) -> Server {
        self.tls = Some(tls);
        self
    }

    /// How long a TLS handshake may take before the connection is closed (default 10 s;
    /// feature `rustls`).
    #[cfg(feature = "rustls")]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Server {
        self.tls_handshake_timeout = timeout;
        self
    }

    /// Serves `service` on the listener named `listener`, as [`serve`] does, with these
    /// options.
    pub async fn serve<S, B>(self, lb: &Context, listener: &str, service: S) -> std::io::Result<()>
    where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        self.run(lb, listener, move |_peer| service.clone()).await
    }

    /// The server, with a service made for each connection by `make` from its peer's
    /// address (`None` on a unix listener).
    pub(crate) async fn run<M, S, B>(self, lb: &Context, name: &str, make: M) -> std::io::Result<()>
    where
        M: Fn(Option<SocketAddr>) -> S + Send + Sync + 'static,
        S: ConnService<B>,
        B: ResBody,
    {
        let listener = Listener::take(lb, name)?;
        let tls_on = self.tls_on();
        let lameduck_time = lb.lameduck_time();
        let shared = Arc::new(conn::Shared {
            lb: lb.clone(),
            make,
            idle_grace: self.idle_grace.min(lameduck_time / 2),
            linger: self.linger,
            listener: Arc::from(name),
            hand_over: self.hand_over,
            counts: lb.http_counts(name),
            #[cfg(feature = "rustls")]
            tls: self.tls.map(|tls| {
                let acceptor = if self.hand_over {
                    tls.movable()
                } else {
                    tls.acceptor
                };
                (acceptor, self.tls_handshake_timeout)
            }),
        });
        // Before ready: the supervisor hands connections only to a process that adopts
        // them by then.
        let mut adopted = shared
            .hand_over
            .then(|| lb.adopt_streams(name, tls_on).ok())
            .flatten();
        // It stands by and resumes by itself: the program need do nothing.
        lb.can_stand_by();
        if self.ready {
            lb.ready();
        }
        let mut connections = JoinSet::new();
        let lameduck = lb.lameduck();
        let mut lameduck = std::pin::pin!(lameduck);
        let mut pause = Pause::new(name);
        // Accepting, or standing by with the listener out of the runtime (so that
        // epoll no longer wakes this process for each connection the new one takes).
        let mut listener = Accepting::Yes(listener);
        loop {
            let accepting = match &listener {
                Accepting::Yes(listener) => Some(listener),
                Accepting::Parked(_) | Accepting::Lost => None,
            };
            let parked = matches!(listener, Accepting::Parked(_));
            tokio::select! {
                biased;
                _ = lameduck.as_mut() => break,
                () = lb.standby(), if accepting.is_some() => {
                    listener = listener.park(name);
                    continue;
                }
                () = lb.resumed(), if parked => {
                    listener = listener.resume(name);
                    continue;
                }
                // Finished connections first, so that a busy listener does not pile
                // them up.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                Some(moved) = next_adopted(&mut adopted) => {
                    for moved in moved {
                        adopt(moved, &shared, &mut connections);
                    }
                }
                accepted = accept(accepting) => match accepted {
                    Ok((Stream::Tcp(stream), peer)) => {
                        pause.reset();
                        let _ = stream.set_nodelay(true);
                        let serve = conn::serve_movable(stream, peer, Arc::clone(&shared));
                        connections.spawn(open_while(shared.counts.clone(), serve));
                    }
                    Ok((Stream::Unix(stream), _)) => {
                        pause.reset();
                        let serve = conn::serve_movable(stream, None, Arc::clone(&shared));
                        connections.spawn(open_while(shared.counts.clone(), serve));
                    }
                    Err(e) if about_one_connection(&e) => {}
                    Err(e) => {
                        tokio::select! {
                            biased;
                            _ = lameduck.as_mut() => break,
                            _ = pause.wait(&e) => {}
                        }
                    }
                },
            }
        }
        // Only this process's copy of the listening socket: the new process accepts
        // what is in its queue.
        drop(listener);
        // Connections handed in before lameduck and not taken yet (none comes after).
        while let Some(moved) = next_adopted(&mut adopted).await {
            for moved in moved {
                adopt(moved, &shared, &mut connections);
            }
        }
        drop(adopted);
        let budget = wind_down_time(lameduck_time);
        let drained = tokio::time::timeout(budget, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            let open = connections.len();
            connections.abort_all();
            while connections.join_next().await.is_some() {}
            errln!(
                "littleboss: listener {name}: {open} connection(s) still open {} after lameduck, closed",
                humantime::format_duration(budget)
            );
        }
        Ok(())
    }
}

/// The connections handed in from the process before and there now (at least one), if
/// this server adopts them: taken together, with one answer to the supervisor.
async fn next_adopted(adopted: &mut Option<crate::Adoptions>) -> Option<Vec<Moved>> {
    match adopted {
        Some(adopted) => adopted.next_all_moved().await,
        None => None,
    }
}

/// Serves a connection handed in from the process before, as if it had been accepted:
/// a TCP one, or a unix one (of a unix listener).
fn adopt<M, S, B>(moved: Moved, shared: &Arc<conn::Shared<M>>, connections: &mut JoinSet<()>)
where
    M: Fn(Option<SocketAddr>) -> S + Send + Sync + 'static,
    S: ConnService<B>,
    B: ResBody,
{
    // Its setup (the peer's address, the runtime's registration) is the task's: of
    // thousands handed in at once, each worker thread sets up its share, and this
    // loop, one task, only starts them.
    let shared = Arc::clone(shared);
    connections.spawn(async move {
        let counts = shared.counts.clone();
        let fd = std::os::fd::AsFd::as_fd(&moved.fd);
        let family = crate::sys::socket_family(fd);
        if family.is_ok_and(|f| f == rustix::net::AddressFamily::UNIX) {
            let serve = conn::serve_moved::<tokio::net::UnixStream, _, _, _>(moved, None, shared);
            open_while(counts, serve).await;
            return;
        }
        let peer = rustix::net::getpeername(fd)
            .ok()
            .flatten()
            .and_then(|addr| std::net::SocketAddr::try_from(addr).ok());
        let _ = rustix::net::sockopt::set_tcp_nodelay(fd, true);
        let serve = conn::serve_moved::<tokio::net::TcpStream, _, _, _>(moved, peer, shared);
        open_while(counts, serve).await;
    });
}

impl Server {
    /// Whether it serves TLS.
    fn tls_on(&self) -> bool {
        #[cfg(feature = "rustls")]
        return self.tls.is_some();
        #[cfg(not(feature = "rustls"))]
        false
    }
}

/// How long the connections may take to finish after lameduck: the lameduck time, less a
/// tenth of it (at most 250 ms) for the program to exit before it would be killed.
fn wind_down_time(lameduck: Duration) -> Duration {
    lameduck.saturating_sub((lameduck / 10).min(Duration::from_millis(250)))
}

/// An accepted connection.
enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Whether a server accepts: standing by, its listener is parked out of the runtime.
enum Accepting {
    Yes(Listener),
    Parked(Parked),
    /// Taking it out of the runtime or back failed (said once): it accepts no more.
    Lost,
}

impl Accepting {
    /// Standing by: out of the runtime.
    fn park(self, name: &str) -> Accepting {
        let Accepting::Yes(listener) = self else {
            return self;
        };
        match listener.park() {
            Ok(parked) => Accepting::Parked(parked),
            Err(e) => {
                errln!("littleboss: listener {name}: cannot stand by: {e}; it accepts no more");
                Accepting::Lost
            }
        }
    }

    /// Resumed: back in the runtime.
    fn resume(self, name: &str) -> Accepting {
        let Accepting::Parked(parked) = self else {
            return self;
        };
        match parked.resume() {
            Ok(listener) => Accepting::Yes(listener),
            Err(e) => {
                errln!("littleboss: listener {name}: cannot accept again after standing by: {e}");
                Accepting::Lost
            }
        }
    }
}

/// The next connection, or never if it does not accept.
async fn accept(listener: Option<&Listener>) -> std::io::Result<(Stream, Option<SocketAddr>)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// A listener out of the runtime, while its process stands by.
enum Parked {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Parked {
    fn resume(self) -> std::io::Result<Listener> {
        Ok(match self {
            Parked::Tcp(l) => Listener::Tcp(tokio::net::TcpListener::from_std(l)?),
            Parked::Unix(l) => Listener::Unix(tokio::net::UnixListener::from_std(l)?),
        })
    }
}

/// The listener a server accepts from.
enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// The listener `name`, TCP or unix.
    fn take(lb: &Context, name: &str) -> std::io::Result<Listener> {
        match lb.tcp_listener(name) {
            Ok(listener) => Ok(Listener::Tcp(listener)),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                // Not a TCP listener: a unix one, or the TCP error stands.
                lb.unix_listener(name).map(Listener::Unix).map_err(|_| e)
            }
            Err(e) => Err(e),
        }
    }

    /// Out of the runtime.
    fn park(self) -> std::io::Result<Parked> {
        Ok(match self {
            Listener::Tcp(l) => Parked::Tcp(l.into_std()?),
            Listener::Unix(l) => Parked::Unix(l.into_std()?),
        })
    }

    async fn accept(&self) -> std::io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Stream::Tcp(stream), Some(peer)))
            }
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), None))
            }
        }
    }
}

/// Whether an accept error concerns only the connection it was about (Linux passes a
/// new connection's pending network errors on to `accept`): try again at once.
fn about_one_connection(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    if matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
    ) {
        return true;
    }
    let Some(code) = e.raw_os_error() else {
        return false;
    };
    [
        Errno::PROTO,
        Errno::NOPROTOOPT,
        Errno::HOSTDOWN,
        Errno::HOSTUNREACH,
        Errno::OPNOTSUPP,
        Errno::NETUNREACH,
        Errno::NETDOWN,
        Errno::TIMEDOUT,
    ]
    .iter()
    .chain(crate::sys::ENONET.iter())
    .any(|errno| errno.raw_os_error() == code)
}

/// The pause after an accept error that is not about one connection (out of fds, out
/// of memory): 5 ms, doubling up to 1 s, until an accept succeeds.
struct Pause<'a> {
    listener: &'a str,
    next: Option<Duration>,
}

impl<'a> Pause<'a> {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn new(listener: &'a str) -> Pause<'a> {
        Pause {
            listener,
            next: None,
        }
    }

    fn reset(&mut self) {
        self.next = None;
    }

    async fn wait(&mut self, e: &std::io::Error) {
        let delay = match self.next {
            None => {
                errln!(
                    "littleboss: listener {}: accept: {e}; pausing accepts, from {} up to {}",
                    self.listener,
                    humantime::format_duration(Self::FIRST),
                    humantime::format_duration(Self::MAX)
                );
                Self::FIRST
            }
            Some(delay) => delay,
        };
        self.next = Some((delay * 2).min(Self::MAX));
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wind_down_leaves_time_to_exit() {
        assert_eq!(
            wind_down_time(Duration::from_secs(2)),
            Duration::from_millis(1800)
        );
        assert_eq!(
            wind_down_time(Duration::from_secs(30)),
            Duration::from_millis(29_750)
        );
        assert_eq!(wind_down_time(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn errors_about_one_connection_are_retried_at_once() {
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert!(about_one_connection(&aborted));
        let proto = std::io::Error::from_raw_os_error(rustix::io::Errno::PROTO.raw_os_error());
        assert!(about_one_connection(&proto));
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert!(!about_one_connection(&emfile));
    }
}
