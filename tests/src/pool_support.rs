//! A pool of idle HTTP/1.1 keep-alive clients, as browsers, reqwest and Go's client use
//! their connections: a request now and then on a connection kept open in between.
//!
//! Each of the `N` clients of [`pooled`] holds one connection. It sends `GET /`
//! (HTTP/1.1, `Host`, keep-alive), reads the whole response (`Content-Length` or
//! chunked), checks that it is a `200` whose body names a pid (`pid NNN`), then pauses
//! for a random time of up to `max_pause`. Before it reuses the connection it checks, as
//! pooled clients do, that the connection is still open: a non-blocking peek
//! (`MSG_PEEK | MSG_DONTWAIT`) that sees the end of the stream or an error means the
//! server closed it, and bytes nobody asked for mean the same (the connection is out of
//! step); either way the client opens a new connection. A response that says
//! `Connection: close` makes the client close the connection itself, and open a new
//! one for its next request.
//!
//! A request sent on a reused connection that passed the check, but that the server
//! closed before any byte of a response (the end of the stream, or a reset), is the
//! keep-alive race: it counts as a failed request and as a connection closed by the
//! server. The client does not retry it (browsers and Go's client retry such an
//! idempotent request on a new connection; counting it shows how often they would have
//! to).
//!
//! Over TLS ([`pooled_tls`]), a client opens its connection with a handshake, and the
//! check before reuse reads what came meanwhile without waiting: nothing (open), a
//! session ticket (open), or the end of the stream, a `close_notify`, an alert or
//! unexpected bytes (closed).
//!
//! The clients are tasks on one thread (a current-thread tokio runtime), so that a few
//! hundred of them cost little on a small machine. They stop when the `stop` flag is
//! set: a client that is pausing stops at once, one with a request in flight after its
//! answer (or its timeout).
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::time::Duration;
//!
//! use littleboss_tests::pool_support::{MAX_PAUSE, pooled};
//!
//! let stop = Arc::new(AtomicBool::new(false));
//! let pool = pooled("127.0.0.1:8080".parse().unwrap(), 400, MAX_PAUSE, stop.clone());
//! while pool.requests() < 10_000 {
//!     std::thread::sleep(Duration::from_millis(100));
//! }
//! stop.store(true, Ordering::Relaxed);
//! let report = pool.finish();
//! println!("{} requests, {} failed", report.requests, report.failed);
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
    ReadBuf,
};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::rustls;

use crate::http_support::pid_in;

/// The default longest pause of a client between two requests.
pub const MAX_PAUSE: Duration = Duration::from_secs(3);

/// How long a client waits for a new connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client waits for a whole response, from sending its request.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many failures a [`PoolReport`] describes (it counts them all).
pub const FAILURES_KEPT: usize = 10;

/// How often the clients' thread looks at the `stop` flag.
const STOP_POLL: Duration = Duration::from_millis(20);

/// The longest status line or header line accepted.
const MAX_LINE: u64 = 8 * 1024;

/// The most header lines accepted in one response.
const MAX_HEADERS: usize = 100;

/// The largest body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// The request every client sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: pool\r\nConnection: keep-alive\r\n\r\n";

/// What the clients of a pool saw, added up over all of them.
///
/// Every request is answered OK or failed: `requests == ok + failed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolReport {
    /// Requests the clients tried to send (a request whose new connection could not be
    /// opened counts too, as failed).
    pub requests: u64,
    /// Requests answered with a `200` and a whole body that names a pid.
    pub ok: u64,
    /// Requests that got no such answer: refused connections, the keep-alive race, a
    /// connection closed in the middle of a response, another status, a bad response,
    /// a timeout.
    pub failed: u64,
    /// The first [`FAILURES_KEPT`] failures, in the order they happened.
    pub failures: Vec<Failure>,
    /// Connections the server closed while they were pooled: seen at the check before
    /// reuse, or by a request that got nothing back (the keep-alive race, also counted
    /// in `raced` and `failed`).
    pub closed_by_server: u64,
    /// Requests on a reused connection that passed the check but was closed (the end
    /// of the stream, or a reset) before any byte of a response: the keep-alive race.
    pub raced: u64,
    /// Responses that said `Connection: close`.
    pub close_answers: u64,
    /// Connections opened (each client's first one included).
    pub opened: u64,
    /// The pids named in the bodies of the answers.
    pub pids: BTreeSet<u32>,
}

/// One failed request of a [`PoolReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// When the request was sent, from the start of the pool.
    pub at: Duration,
    /// What went wrong.
    pub what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {:.3} s: {}", self.at.as_secs_f64(), self.what)
    }
}

impl PoolReport {
    /// Adds `other`'s counts and pids to these, and keeps the earliest
    /// [`FAILURES_KEPT`] failures of both.
    pub fn merge(&mut self, other: PoolReport) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.failed += other.failed;
        self.closed_by_server += other.closed_by_server;
        self.raced += other.raced;
        self.close_answers += other.close_answers;
        self.opened += other.opened;
        self.pids.extend(other.pids);
        self.failures.extend(other.failures);
        self.failures.sort_by_key(|f| f.at);
        self.failures.truncate(FAILURES_KEPT);
    }

    /// Counts a failed request sent at `at`, described by `what`.
    fn fail(&mut self, at: Duration, what: String) {
        self.failed += 1;
        if self.failures.len() < FAILURES_KEPT {
            self.failures.push(Failure { at, what });
        }
    }
}

/// A running pool of clients, from [`pooled`]. [`finish`](Self::finish) waits for its
/// clients and returns their report; dropping it sets the `stop` flag and waits too.
#[derive(Debug)]
pub struct PoolHandle {
    stop: Arc<AtomicBool>,
    /// Requests sent and answered so far, by every client.
    progress: Arc<Progress>,
    /// The clients' thread, or the report of a thread that could not start; `None` once
    /// joined.
    thread: Option<Result<JoinHandle<PoolReport>, PoolReport>>,
}

impl PoolHandle {
    /// Sets the `stop` flag (if it is not set yet), waits for every client to stop, and
    /// returns what they saw.
    pub fn finish(mut self) -> PoolReport {
        self.join()
    }

    /// How many requests have been answered so far (status 200, a whole body), by
    /// every client: to wait until the load has reached a child.
    pub fn answered(&self) -> u64 {
        self.progress.answered.load(Ordering::Relaxed)
    }

    /// How many requests have been sent so far, by every client.
    pub fn requests(&self) -> u64 {
        self.progress.requests.load(Ordering::Relaxed)
    }

    fn join(&mut self) -> PoolReport {
        self.stop.store(true, Ordering::Relaxed);
        let thread = match self.thread.take() {
            Some(Ok(thread)) => thread,
            Some(Err(report)) => return report,
            None => return PoolReport::default(),
        };
        thread.join().unwrap_or_else(|_| {
            let mut report = PoolReport::default();
            report.fail(Duration::ZERO, "the clients' thread panicked".into());
            report
        })
    }
}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.join();
        }
    }
}

/// The clients' counts as they go.
#[derive(Debug, Default)]
struct Progress {
    requests: AtomicU64,
    answered: AtomicU64,
}

/// Starts `clients` pooled clients of `addr` (see the [module](self) documentation),
/// each pausing up to `max_pause` between two requests, until `stop` is set. Each
/// client's first request comes after a first random pause, so that they do not all
/// connect at once.
pub fn pooled(
    addr: SocketAddr,
    clients: usize,
    max_pause: Duration,
    stop: Arc<AtomicBool>,
) -> PoolHandle {
    pool(addr, None, clients, max_pause, stop)
}

/// [`pooled`], over TLS with `config` (server name `localhost`).
pub fn pooled_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    clients: usize,
    max_pause: Duration,
    stop: Arc<AtomicBool>,
) -> PoolHandle {
    pool(addr, Some(config), clients, max_pause, stop)
}

fn pool(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    clients: usize,
    max_pause: Duration,
    stop: Arc<AtomicBool>,
) -> PoolHandle {
    let flag = Arc::clone(&stop);
    let progress = Arc::new(Progress::default());
    let counts = Arc::clone(&progress);
    let spawned = std::thread::Builder::new()
        .name("pooled-clients".into())
        .spawn(move || run(addr, tls, clients, max_pause, &flag, &counts));
    let thread = spawned.map_err(|e| {
        // A thread that could not start reports that as its one failure.
        let mut report = PoolReport::default();
        report.fail(Duration::ZERO, format!("start the clients' thread: {e}"));
        report
    });
    PoolHandle {
        stop,
        progress,
        thread: Some(thread),
    }
}

/// The clients' thread: a current-thread runtime that runs every client and a watch of
/// the `stop` flag, and adds up their reports.
fn run(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    clients: usize,
    max_pause: Duration,
    stop: &AtomicBool,
    progress: &Arc<Progress>,
) -> PoolReport {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let mut report = PoolReport::default();
            report.fail(Duration::ZERO, format!("start a runtime: {e}"));
            return report;
        }
    };
    let started = Instant::now();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    runtime.block_on(async move {
        let (stopped_tx, stopped) = watch::channel(false);
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let progress = Arc::clone(progress);
                tokio::spawn(client(
                    addr,
                    tls.clone(),
                    max_pause,
                    rng,
                    started,
                    stopped.clone(),
                    progress,
                ))
            })
            .collect();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(STOP_POLL).await;
        }
        let _ = stopped_tx.send(true);
        let mut report = PoolReport::default();
        for task in tasks {
            match task.await {
                Ok(one) => report.merge(one),
                Err(e) => report.fail(started.elapsed(), format!("a client failed: {e}")),
            }
        }
        report
    })
}

/// One client: see the [module](self) documentation.
async fn client(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    max_pause: Duration,
    mut rng: Rng,
    started: Instant,
    mut stopped: watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> PoolReport {
    let mut report = PoolReport::default();
    let mut pooled: Option<BufReader<Conn>> = None;
    while !pause(&mut stopped, rng.below(max_pause)).await {
        // The check before reuse.
        let reused = match pooled.take() {
            Some(mut conn) => {
                let open = still_open(&mut conn).await;
                if !open {
                    report.closed_by_server += 1;
                }
                open.then_some(conn)
            }
            None => None,
        };
        report.requests += 1;
        progress.requests.fetch_add(1, Ordering::Relaxed);
        let at = started.elapsed();
        let (mut conn, reused) = match reused {
            Some(conn) => (conn, true),
            None => {
                match tokio::time::timeout(CONNECT_TIMEOUT, connect(addr, tls.as_ref())).await {
                    Ok(Ok(stream)) => {
                        report.opened += 1;
                        (BufReader::with_capacity(2048, stream), false)
                    }
                    Ok(Err(e)) => {
                        report.fail(at, format!("connect: {e}"));
                        continue;
                    }
                    Err(_) => {
                        report.fail(
                            at,
                            format!("connect: no connection within {CONNECT_TIMEOUT:?}"),
                        );
                        continue;
                    }
                }
            }
        };
        let exchanged = tokio::time::timeout(RESPONSE_TIMEOUT, exchange(&mut conn)).await;
        let answer = match exchanged {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) if e.before_any_byte && reused => {
                report.closed_by_server += 1;
                report.raced += 1;
                let what = format!("reused connection closed before a response: {}", e.what);
                report.fail(at, what);
                continue;
            }
            Ok(Err(e)) => {
                let kind = if reused { "reused" } else { "new" };
                report.fail(at, format!("{kind} connection: {}", e.what));
                continue;
            }
            Err(_) => {
                let what = format!("no whole response within {RESPONSE_TIMEOUT:?}");
                report.fail(at, what);
                continue;
            }
        };
        if answer.status != 200 {
            report.fail(at, format!("status {}", answer.status));
        } else if let Some(pid) = pid_in(&answer.body) {
            report.ok += 1;
            progress.answered.fetch_add(1, Ordering::Relaxed);
            report.pids.insert(pid);
        } else {
            report.fail(at, format!("a body without a pid: {:?}", answer.body));
        }
        if answer.close {
            report.close_answers += 1;
        } else {
            pooled = Some(conn);
        }
    }
    report
}

/// Sleeps for `time`, or until the pool is stopped; whether it is stopped.
async fn pause(stopped: &mut watch::Receiver<bool>, time: Duration) -> bool {
    if *stopped.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(time) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}

/// A client's connection: plain TCP, or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A new connection to `addr`, with a TLS handshake if `tls`.
async fn connect(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(Conn::Plain(stream));
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a server name");
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    Ok(Conn::Tls(Box::new(connector.connect(name, stream).await?)))
}

impl AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The check of a pooled connection before its reuse: open unless a non-blocking peek
/// sees the end of the stream or an error, or there are bytes no request asked for
/// (already read, or waiting). Over TLS, what came meanwhile is read without waiting:
/// records that carry no data (a session ticket) leave it open, and the end of the
/// stream, a `close_notify`, an alert or data close it.
async fn still_open(conn: &mut BufReader<Conn>) -> bool {
    use rustix::io::Errno;
    use rustix::net::RecvFlags;
    if !conn.buffer().is_empty() {
        return false;
    }
    let stream = match conn.get_mut() {
        Conn::Plain(stream) => stream,
        Conn::Tls(tls) => {
            let mut byte = [0u8; 1];
            // Polled once: ready only if something came.
            let read = tokio::time::timeout(Duration::ZERO, tls.read(&mut byte)).await;
            return read.is_err();
        }
    };
    let mut byte = [0u8; 1];
    loop {
        match rustix::net::recv(
            &*stream,
            &mut byte[..],
            RecvFlags::PEEK | RecvFlags::DONTWAIT,
        ) {
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return true,
            // The end of the stream, unexpected bytes, or an error (a reset).
            Ok(_) | Err(_) => return false,
        }
    }
}

/// A response, read whole.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    /// Its status code.
    status: u16,
    /// Whether the connection is done after it (`Connection: close`, or a body that
    /// ends with the connection).
    close: bool,
    /// Its body, as text.
    body: String,
}

/// Why an exchange failed.
#[derive(Debug)]
struct ExchangeError {
    /// The request could not be sent, or the connection ended (or was reset) before
    /// any byte of a response.
    before_any_byte: bool,
    what: String,
}

impl ExchangeError {
    fn after(what: impl Into<String>) -> ExchangeError {
        ExchangeError {
            before_any_byte: false,
            what: what.into(),
        }
    }
}

/// Sends the request on `conn` and reads its response.
async fn exchange(conn: &mut BufReader<Conn>) -> Result<Answer, ExchangeError> {
    let sent = async {
        conn.get_mut().write_all(REQUEST).await?;
        conn.get_mut().flush().await
    };
    if let Err(e) = sent.await {
        return Err(ExchangeError {
            before_any_byte: true,
            what: format!("send: {e}"),
        });
    }
    read_response(conn).await
}

/// Reads one whole response from `reader`: the status line, the headers, and the body
/// (`Content-Length`, chunked, or up to the end of the stream).
async fn read_response<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Answer, ExchangeError> {
    match reader.fill_buf().await {
        Ok([]) => {
            return Err(ExchangeError {
                before_any_byte: true,
                what: "the end of the stream".into(),
            });
        }
        Ok(_) => {}
        Err(e) => {
            return Err(ExchangeError {
                before_any_byte: true,
                what: format!("read: {e}"),
            });
        }
    }
    let status_line = read_line(reader, "the status line").await?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| ExchangeError::after(format!("status line {status_line:?}")))?;
    // HTTP/1.0 closes unless it says keep-alive.
    let mut close = version == "HTTP/1.0";
    let mut length = None;
    let mut chunked = false;
    let mut headers = 0;
    loop {
        let line = read_line(reader, "a header").await?;
        if line.is_empty() {
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(ExchangeError::after("too many headers"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ExchangeError::after(format!("header {line:?}")));
        };
        let value = value.trim().to_ascii_lowercase();
        let tokens = || value.split(',').map(str::trim);
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let parsed = value.parse::<usize>().ok();
                length = Some(parsed.ok_or_else(|| ExchangeError::after(format!("{line:?}")))?);
            }
            "transfer-encoding" => chunked = tokens().any(|t| t == "chunked"),
            "connection" => {
                if tokens().any(|t| t == "close") {
                    close = true;
                } else if tokens().any(|t| t == "keep-alive") {
                    close = false;
                }
            }
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(reader).await?
    } else if let Some(length) = length {
        if length > MAX_BODY {
            return Err(ExchangeError::after(format!("a body of {length} bytes")));
        }
        let mut body = vec![0; length];
        reader
            .read_exact(&mut body)
            .await
            .map_err(|e| ExchangeError::after(format!("the body ({length} bytes): {e}")))?;
        body
    } else {
        // A body that ends with the connection.
        close = true;
        let mut body = Vec::new();
        let mut limited = (&mut *reader).take(MAX_BODY as u64 + 1);
        limited
            .read_to_end(&mut body)
            .await
            .map_err(|e| ExchangeError::after(format!("the body: {e}")))?;
        if body.len() > MAX_BODY {
            return Err(ExchangeError::after("a body too large"));
        }
        body
    };
    Ok(Answer {
        status,
        close,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A chunked body: chunks until the last (size 0), then the trailers up to an empty
/// line.
async fn read_chunked<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, ExchangeError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader, "a chunk size").await?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| ExchangeError::after(format!("chunk size {line:?}")))?;
        if size == 0 {
            break;
        }
        if body.len() + size > MAX_BODY {
            return Err(ExchangeError::after("a chunked body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .await
            .map_err(|e| ExchangeError::after(format!("a chunk: {e}")))?;
        let end = read_line(reader, "the end of a chunk").await?;
        if !end.is_empty() {
            return Err(ExchangeError::after(format!("after a chunk: {end:?}")));
        }
    }
    let mut trailers = 0;
    while !read_line(reader, "a trailer").await?.is_empty() {
        trailers += 1;
        if trailers > MAX_HEADERS {
            return Err(ExchangeError::after("too many trailers"));
        }
    }
    Ok(body)
}

/// One line ending in CRLF (or LF), without its end; `what` names it in errors.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    what: &str,
) -> Result<String, ExchangeError> {
    let mut line = Vec::new();
    let mut limited = (&mut *reader).take(MAX_LINE);
    limited
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| ExchangeError::after(format!("{what}: {e}")))?;
    if line.last() != Some(&b'\n') {
        let end = match line.len() as u64 {
            MAX_LINE => "too long",
            _ => "cut short by the end of the stream",
        };
        return Err(ExchangeError::after(format!("{what}: {end}")));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// A small random number generator (splitmix64): the clients' pauses need no more.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A time from zero to `max`, evenly spread.
    fn below(&mut self, max: Duration) -> Duration {
        let micros = max.as_micros().min(u64::MAX as u128) as u64;
        Duration::from_micros(self.next() % micros.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader as StdBufReader, Write};
    use std::net::{TcpListener, TcpStream as StdTcpStream};

    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Answer, ExchangeError> {
        let mut reader = bytes;
        read_response(&mut reader).await
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    #[test]
    fn reads_lengths_chunks_and_closes() {
        block_on(async {
            let answer = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\npid 12\n")
                .await
                .expect("a response");
            assert_eq!(
                answer,
                Answer {
                    status: 200,
                    close: false,
                    body: "pid 12\n".into()
                }
            );
            let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
                connection: close\r\n\r\n4\r\npid \r\n3;x=y\r\n34\n\r\n0\r\n\r\n";
            let answer = parse(chunked).await.expect("a chunked response");
            assert_eq!(
                answer,
                Answer {
                    status: 200,
                    close: true,
                    body: "pid 34\n".into()
                }
            );
            let until_end = parse(b"HTTP/1.1 200 OK\r\n\r\npid 5")
                .await
                .expect("a response");
            assert!(until_end.close);
            assert_eq!(until_end.body, "pid 5");
        });
    }

    #[test]
    fn bad_responses_are_errors() {
        block_on(async {
            assert!(parse(b"").await.expect_err("empty").before_any_byte);
            for bad in [
                &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npid 1"[..],
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                b"SSH-2.0-OpenSSH\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"HTTP/1.1 200 OK\r\nContent",
            ] {
                let e = parse(bad).await.expect_err("a bad response");
                assert!(!e.before_any_byte, "{bad:?}: {e:?}");
            }
        });
    }

    /// How the in-test server treats its connections.
    #[derive(Clone, Copy)]
    enum Serve {
        /// Keep-alive, answers alternately with a length and chunked.
        KeepAlive,
        /// `Connection: close` on every answer, then closes.
        SaysClose,
        /// Answers without saying so, then closes at once.
        ClosesSilently,
        /// Answers `503`.
        Unavailable,
    }

    /// A server on 127.0.0.1 that serves `how`, a thread for each connection.
    fn server(how: Serve) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("an address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream, how));
            }
        });
        addr
    }

    fn serve(stream: StdTcpStream, how: Serve) {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = StdBufReader::new(stream);
        for n in 0.. {
            let mut line = String::new();
            // The request's head, up to its empty line.
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line.trim_end().is_empty() => break,
                    Ok(_) => {}
                }
            }
            let answer: &[u8] = match (how, n % 2) {
                (Serve::KeepAlive, 0) => b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\npid 42\n",
                (Serve::KeepAlive, _) => {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npid 43\n\r\n0\r\n\r\n"
                }
                (Serve::SaysClose, _) => {
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 7\r\n\r\npid 44\n"
                }
                (Serve::ClosesSilently, _) => {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\npid 45\n"
                }
                (Serve::Unavailable, _) => b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n",
            };
            if writer.write_all(answer).is_err() {
                return;
            }
            if matches!(how, Serve::SaysClose | Serve::ClosesSilently) {
                return;
            }
        }
    }

    /// Runs `clients` against `addr` until they have sent `requests` requests.
    fn run_pool(addr: SocketAddr, clients: usize, requests: u64) -> PoolReport {
        let stop = Arc::new(AtomicBool::new(false));
        let pool = pooled(addr, clients, Duration::from_millis(20), Arc::clone(&stop));
        crate::wait_for(crate::DEADLINE, "the pooled clients' requests", || {
            (pool.requests() >= requests).then_some(())
        });
        stop.store(true, Ordering::Relaxed);
        let report = pool.finish();
        assert_eq!(report.requests, report.ok + report.failed, "{report:#?}");
        report
    }

    #[test]
    fn keeps_connections_alive() {
        let report = run_pool(server(Serve::KeepAlive), 4, 12);
        assert!(report.ok >= 8, "{report:#?}");
        assert_eq!(report.failed, 0, "{report:#?}");
        assert_eq!(report.opened, 4, "{report:#?}");
        assert_eq!(report.closed_by_server, 0, "{report:#?}");
        assert_eq!(report.pids, BTreeSet::from([42, 43]), "{report:#?}");
    }

    #[test]
    fn reconnects_after_connection_close() {
        let report = run_pool(server(Serve::SaysClose), 3, 9);
        assert!(report.ok >= 6, "{report:#?}");
        assert_eq!(report.failed, 0, "{report:#?}");
        assert_eq!(report.close_answers, report.ok, "{report:#?}");
        assert_eq!(report.opened, report.requests, "{report:#?}");
        assert_eq!(report.closed_by_server, 0, "{report:#?}");
    }

    #[test]
    fn sees_connections_closed_while_idle() {
        let report = run_pool(server(Serve::ClosesSilently), 3, 12);
        assert!(report.closed_by_server >= 3, "{report:#?}");
        assert!(report.opened > 3, "{report:#?}");
        // A close the check did not see yet is the race, and nothing else fails.
        assert_eq!(report.failed, report.raced, "{report:#?}");
    }

    #[test]
    fn a_bad_status_is_a_failure() {
        let report = run_pool(server(Serve::Unavailable), 2, 4);
        assert_eq!(report.ok, 0, "{report:#?}");
        assert!(report.failed >= 2, "{report:#?}");
        assert!(report.failures[0].what.contains("503"), "{report:#?}");
        let refused = run_pool(free_addr(), 2, 2);
        assert_eq!(refused.ok, 0, "{refused:#?}");
        assert!(refused.failures[0].what.contains("connect"), "{refused:#?}");
    }

    fn free_addr() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("an address")
    }
}
