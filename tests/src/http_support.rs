//! Support for the tests of `littleboss::http` and `littleboss::axum` and for the
//! benchmark: real HTTP clients (hyper's own client connections, HTTP/1.1 and HTTP/2,
//! plain or TLS), load that tells a lost request from one the client may retry, and
//! throwaway certificates.
//!
//! A request's [`Outcome`] is one of:
//!
//! - answered (`200` and a whole body naming the pid that answered);
//! - [`Outcome::Retry`]: the server never took it, so a client retries it on a new
//!   connection: hyper handed it back unsent (the connection had closed), or it was an
//!   HTTP/2 stream above the last stream id of the server's GOAWAY, or refused with
//!   `REFUSED_STREAM` (RFC 9113, section 8.7: both are guaranteed unprocessed);
//! - [`Outcome::Failed`]: anything else, a request lost (reset, closed mid-response, a
//!   wrong status, a timeout).

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// How long one request (connect, TLS, answer) may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A self-signed certificate for `localhost` and `127.0.0.1`, and its key, as PEM files.
#[derive(Debug)]
pub struct Certs {
    /// The certificate's PEM file.
    pub cert: PathBuf,
    /// The private key's PEM file.
    pub key: PathBuf,
    /// The certificate, for a client to trust.
    pub der: CertificateDer<'static>,
}

impl Certs {
    /// Makes a new certificate and key in `dir`, as `NAME.pem` and `NAME-key.pem`.
    pub fn new(dir: &Path, name: &str) -> Certs {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("generate a certificate");
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert, made.cert.pem()).expect("write the certificate");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("write the key");
        Certs {
            cert,
            key,
            der: made.cert.der().clone(),
        }
    }

    /// A TLS client configuration that trusts only this certificate and offers `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("trust the certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// The HTTP version a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1 (with ALPN `http/1.1` over TLS).
    Http1,
    /// HTTP/2: with prior knowledge (h2c) in plain text, ALPN `h2` over TLS.
    Http2,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Client {
    /// The server.
    pub addr: SocketAddr,
    /// HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// TLS, trusting these certificates, or plain text.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered `200` by process `pid`; `close`: the response said `Connection: close`.
    Answered {
        /// The pid in the body.
        pid: u32,
        /// Whether the server closes the connection after it.
        close: bool,
    },
    /// The server never took it: retry it on a new connection.
    Retry(String),
    /// Lost.
    Failed(String),
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// One client connection.
pub struct Connection {
    sender: Sender,
    version: Version,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A plain-text client of `addr`.
    pub fn plain(addr: SocketAddr, version: Version) -> Client {
        Client {
            addr,
            version,
            tls: None,
        }
    }

    /// A TLS client of `addr` that trusts `certs` and offers the ALPN of `version`.
    pub fn tls(addr: SocketAddr, version: Version, certs: &Certs) -> Client {
        let alpn: &[&[u8]] = match version {
            Version::Http1 => &[b"http/1.1"],
            Version::Http2 => &[b"h2"],
        };
        Client {
            addr,
            version,
            tls: Some(certs.client(alpn)),
        }
    }

    /// Opens a connection (TCP, TLS if configured, the HTTP handshake).
    pub async fn connect(&self) -> io::Result<Connection> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.connect_now())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }

    async fn connect_now(&self) -> io::Result<Connection> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => self.handshake(tcp).await,
            Some(config) => {
                let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await?;
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let wanted: &[u8] = match self.version {
                    Version::Http1 => b"http/1.1",
                    Version::Http2 => b"h2",
                };
                if alpn.as_deref() != Some(wanted) {
                    return Err(io::Error::other(format!("ALPN chose {alpn:?}")));
                }
                self.handshake(tls).await
            }
        }
    }

    async fn handshake<IO>(&self, io: IO) -> io::Result<Connection>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let sender = match self.version {
            Version::Http1 => {
                let (sender, connection) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(io::Error::other)?;
                tokio::spawn(connection);
                Sender::Http1(sender)
            }
            Version::Http2 => {
                let (sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(io::Error::other)?;
                tokio::spawn(connection);
                Sender::Http2(sender)
            }
        };
        Ok(Connection {
            sender,
            version: self.version,
        })
    }

    /// `GET path` on a new connection, closed after it.
    pub async fn get_once(&self, path: &str) -> Outcome {
        match self.connect().await {
            Ok(mut connection) => connection.get(path, true).await,
            Err(e) => Outcome::Failed(format!("connect: {e}")),
        }
    }
}

impl Connection {
    /// A sender for one more concurrent stream (HTTP/2 only; `None` on HTTP/1.1).
    pub fn stream(&self) -> Option<Connection> {
        match &self.sender {
            Sender::Http2(sender) => Some(Connection {
                sender: Sender::Http2(sender.clone()),
                version: self.version,
            }),
            Sender::Http1(_) => None,
        }
    }

    /// Whether the connection can take no more requests.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    /// `GET path` on this connection (`close`: ask for `Connection: close`, HTTP/1.1).
    pub async fn get(&mut self, path: &str, close: bool) -> Outcome {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.get_now(path, close)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed(format!("GET {path}: no answer within {REQUEST_TIMEOUT:?}")),
        }
    }

    async fn get_now(&mut self, path: &str, close: bool) -> Outcome {
        let mut request = Request::get(path);
        if self.version == Version::Http1 {
            request = request.header("host", "localhost");
            if close {
                request = request.header("connection", "close");
            }
        } else {
            request = request.uri(format!("http://localhost{path}"));
        }
        let Ok(request) = request.body(Empty::<Bytes>::new()) else {
            return Outcome::Failed("a bad request".into());
        };
        let sent = match &mut self.sender {
            Sender::Http1(sender) => {
                if sender.ready().await.is_err() {
                    return Outcome::Retry("the connection had closed".into());
                }
                sender.try_send_request(request).await
            }
            Sender::Http2(sender) => {
                if sender.ready().await.is_err() {
                    return Outcome::Retry("the connection had closed".into());
                }
                sender.try_send_request(request).await
            }
        };
        match sent {
            Ok(response) => read(response).await,
            Err(mut e) => {
                if e.take_message().is_some() {
                    Outcome::Retry(format!("not sent: {}", e.error()))
                } else {
                    classify(&e.into_error())
                }
            }
        }
    }
}

/// Reads a whole response.
async fn read(response: Response<hyper::body::Incoming>) -> Outcome {
    let status = response.status();
    let close = response
        .headers()
        .get("connection")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let body = match response.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Outcome::Failed(format!("the body was cut: {}", chain(&e))),
    };
    let body = String::from_utf8_lossy(&body);
    if status != 200 {
        return Outcome::Failed(format!("status {status}: {body:?}"));
    }
    match pid_in(&body) {
        Some(pid) => Outcome::Answered { pid, close },
        None => Outcome::Failed(format!("no pid in {body:?}")),
    }
}

/// A request error that a client may retry (the server never processed the stream), or
/// a failure.
fn classify(e: &hyper::Error) -> Outcome {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            let refused = h2.reason() == Some(h2::Reason::REFUSED_STREAM);
            let above_goaway =
                h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
            if refused || above_goaway {
                return Outcome::Retry(format!("refused: {h2}"));
            }
        }
        source = err.source();
    }
    Outcome::Failed(chain(e))
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The pid in an answer: the number after the last `pid `.
pub fn pid_in(body: &str) -> Option<u32> {
    let (_, rest) = body.rsplit_once("pid ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// How a load worker uses its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// A new connection for each request.
    Fresh,
    /// One connection kept alive, a request at a time, a new one when the server says
    /// `Connection: close` or the connection closes.
    KeepAlive,
    /// HTTP/2: this many streams at once on one connection, round after round.
    Streams(usize),
}

/// What a load worker saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests answered.
    pub answered: u64,
    /// Requests the server never took, retried.
    pub retried: u64,
    /// Connections the client opened.
    pub connections: u64,
    /// Answers that said `Connection: close`.
    pub closes: u64,
    /// Lost requests, with what happened and when (since the load started).
    pub failures: Vec<String>,
    /// The pids that answered.
    pub pids: BTreeSet<u32>,
    /// When each request was answered (since `started`), how long it took, and by whom.
    pub samples: Vec<(Duration, Duration, u32)>,
}

impl Report {
    /// Adds another worker's report.
    pub fn merge(&mut self, other: Report) {
        self.answered += other.answered;
        self.retried += other.retried;
        self.connections += other.connections;
        self.closes += other.closes;
        self.failures.extend(other.failures);
        self.pids.extend(other.pids);
        self.samples.extend(other.samples);
    }
}

/// How many times one request is retried before it counts as lost.
const MAX_RETRIES: u32 = 5;

/// How a load worker runs, and what it shares with the others.
#[derive(Clone, Debug)]
pub struct Load {
    /// Stops every worker.
    pub stop: Arc<AtomicBool>,
    /// The answers of every worker so far.
    pub answered: Arc<AtomicU64>,
    /// The most requests one worker sends.
    pub max: u64,
    /// The pause between two rounds of a worker (zero: back to back).
    pub pace: Duration,
    /// What the samples' times count from.
    pub started: Instant,
}

impl Load {
    /// Workers sending at most `max` requests each, `pace` apart.
    pub fn new(max: u64, pace: Duration) -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
            answered: Arc::new(AtomicU64::new(0)),
            max,
            pace,
            started: Instant::now(),
        }
    }

    /// Stops the workers.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The answers so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }
}

/// Loads `client` with `pattern` until `load` stops, at most `load.max` requests.
pub async fn load(client: Client, pattern: Pattern, load: Load) -> Report {
    let Load {
        stop,
        answered,
        max,
        pace,
        started,
    } = load;
    let mut report = Report::default();
    let mut connection: Option<Connection> = None;
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && sent < max {
        let batch = match pattern {
            Pattern::Streams(n) => n,
            Pattern::Fresh | Pattern::KeepAlive => 1,
        };
        sent += batch as u64;
        let mut pending = batch;
        let mut tries = 0;
        let t0 = Instant::now();
        while pending > 0 {
            if tries > MAX_RETRIES {
                let at = started.elapsed();
                for _ in 0..pending {
                    report
                        .failures
                        .push(format!("at {at:?}: retried {MAX_RETRIES} times"));
                }
                break;
            }
            tries += 1;
            if pattern == Pattern::Fresh || connection.as_ref().is_none_or(Connection::is_closed) {
                match client.connect().await {
                    Ok(c) => {
                        report.connections += 1;
                        connection = Some(c);
                    }
                    Err(e) => {
                        let at = started.elapsed();
                        for _ in 0..pending {
                            report.failures.push(format!("at {at:?}: connect: {e}"));
                        }
                        break;
                    }
                }
            }
            let Some(conn) = connection.as_mut() else {
                break;
            };
            let outcomes = match pattern {
                Pattern::Streams(_) => {
                    let mut streams = tokio::task::JoinSet::new();
                    for _ in 0..pending {
                        if let Some(mut stream) = conn.stream() {
                            streams.spawn(async move { stream.get("/", false).await });
                        }
                    }
                    let mut outcomes = Vec::new();
                    while let Some(outcome) = streams.join_next().await {
                        outcomes.push(
                            outcome.unwrap_or_else(|e| Outcome::Failed(format!("panic: {e}"))),
                        );
                    }
                    outcomes
                }
                Pattern::Fresh => vec![conn.get("/", true).await],
                Pattern::KeepAlive => vec![conn.get("/", false).await],
            };
            pending = 0;
            let mut reconnect = pattern == Pattern::Fresh;
            for outcome in outcomes {
                match outcome {
                    Outcome::Answered { pid, close } => {
                        report.answered += 1;
                        answered.fetch_add(1, Ordering::Relaxed);
                        report.pids.insert(pid);
                        report.samples.push((started.elapsed(), t0.elapsed(), pid));
                        if close {
                            report.closes += 1;
                            reconnect = true;
                        }
                    }
                    Outcome::Retry(_) => {
                        report.retried += 1;
                        pending += 1;
                        reconnect = true;
                    }
                    Outcome::Failed(e) => {
                        report
                            .failures
                            .push(format!("at {:?} ({pattern:?}): {e}", started.elapsed()));
                        reconnect = true;
                    }
                }
            }
            if reconnect {
                connection = None;
            }
        }
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    report
}

/// A blocking `GET /` over HTTPS (HTTP/1.1) that trusts `certs`: the body of a `200`.
pub fn https_get(addr: SocketAddr, certs: &Certs) -> io::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = Client::tls(addr, Version::Http1, certs);
        let mut connection = client.connect().await?;
        let request = Request::get("/")
            .header("host", "localhost")
            .header("connection", "close")
            .body(Empty::<Bytes>::new())
            .map_err(io::Error::other)?;
        let Sender::Http1(sender) = &mut connection.sender else {
            return Err(io::Error::other("not HTTP/1.1"));
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
            .map_err(io::Error::other)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != 200 {
            return Err(io::Error::other(format!("status {status}: {body:?}")));
        }
        Ok(body)
    })
}
