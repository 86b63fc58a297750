//! The metrics' listener (`metrics = "NAME"`): `GET /metrics`, served by the
//! supervisor itself on a task of its own, so that a scraper never stalls its loop.
//!
//! Each connection gets one answer and is closed. What a connection may cost is bound:
//! a request of at most [`MAX_REQUEST`] bytes, sent within [`REQUEST_TIME`], and at most
//! [`MAX_CONNECTIONS`] connections at once; each refusal is counted
//! (`littleboss_metrics_refused_total{reason}`). The text is asked of the loop (a
//! [`StateReader`]), which renders it from the state between two inputs.
//!
//! The listener is parsed by the supervisor's process, which runs as root when it
//! starts its children as another user: give it a unix or a loopback address.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::supervisor::machine::StateReader;
use tokio::task::JoinHandle;

use crate::spec::Network;
use crate::supervisor::fds::FdTable;
use crate::supervisor::metrics::Format;
use crate::supervisor::state::{FdKey, ListenerRecord};

/// The largest request accepted, head and all.
pub(crate) const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request.
pub(crate) const REQUEST_TIME: Duration = Duration::from_secs(5);
/// The most connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 100;
/// How long accepting pauses after it failed (out of fds, say), rather than spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// The server of the metrics' listener, following the listener as reloads move it.
#[derive(Debug)]
pub(crate) struct ScrapeServer {
    /// The listener served now, by its key in the fd table.
    serving: Option<(FdKey, JoinHandle<()>)>,
    readers: mpsc::Sender<StateReader>,
    refused: Arc<[AtomicU64; 3]>,
    /// One permit per connection that may be answered at once, each held by the
    /// connection being answered.
    slots: Arc<Semaphore>,
}

impl ScrapeServer {
    /// A server that serves nothing yet, whose scrapes ask `readers` for the state.
    pub(crate) fn new(readers: mpsc::Sender<StateReader>) -> ScrapeServer {
        ScrapeServer {
            serving: None,
            readers,
            refused: Arc::default(),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }

    /// Stops accepting (the next [`follow`](Self::follow) accepts again); the
    /// listening socket stays open, and what comes meanwhile waits in its queue.
    pub(crate) fn pause(&mut self) {
        if let Some((_, task)) = self.serving.take() {
            task.abort();
        }
    }

    /// Resolves once no scrape is being answered (after [`pause`](Self::pause), none
    /// begins): before the supervisor's exec, which would close their sockets.
    pub(crate) fn answered(&self) -> impl std::future::Future<Output = ()> + use<> {
        let slots = Arc::clone(&self.slots);
        async move {
            let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
            // Released at once: after a failed exec, scrapes are answered again.
            drop(slots.acquire_many(all).await);
        }
    }

    /// The refusals so far, by [`REFUSALS`](crate::supervisor::metrics::REFUSALS).
    pub(crate) fn refused(&self) -> [u64; 3] {
        counts(&self.refused)
    }

    /// Serves `record`'s socket, if it is not served already (a reload that moved
    /// the listener replaces it); serves nothing if it is off. An error is what to log.
    pub(crate) fn follow(
        &mut self,
        record: Option<&ListenerRecord>,
        fds: &FdTable,
    ) -> Result<(), String> {
        let wanted = record.and_then(|r| r.bound.as_ref().map(|(_, key)| (*key, r)));
        if self.serving.as_ref().map(|(key, _)| *key) == wanted.map(|(key, _)| key) {
            return Ok(());
        }
        if let Some((_, task)) = self.serving.take() {
            task.abort();
        }
        let Some((key, record)) = wanted else {
            return Ok(());
        };
        let name = &record.name;
        let fd = (fds.get(key))
            .and_then(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0).ok())
            .ok_or_else(|| format!("metrics: listener {name}: its socket is gone"))?;
        let shared = Shared {
            readers: self.readers.clone(),
            refused: Arc::clone(&self.refused),
            slots: Arc::clone(&self.slots),
        };
        let task = match record.network {
            Network::Tcp => {
                let std = std::net::TcpListener::from(fd);
                let listener = nonblocking(&std)
                    .and_then(|()| tokio::net::TcpListener::from_std(std))
                    .map_err(|e| format!("metrics: listener {name}: {e}"))?;
                tokio::spawn(async move {
                    loop {
                        match listener.accept().await {
                            Ok((stream, _)) => shared.serve(stream),
                            Err(_) => tokio::time::sleep(ACCEPT_PAUSE).await,
                        }
                    }
                })
            }
            Network::Unix => {
                let std = std::os::unix::net::UnixListener::from(fd);
                let listener = nonblocking_unix(&std)
                    .and_then(|()| tokio::net::UnixListener::from_std(std))
                    .map_err(|e| format!("metrics: listener {name}: {e}"))?;
                tokio::spawn(async move {
                    loop {
                        match listener.accept().await {
                            Ok((stream, _)) => shared.serve(stream),
                            Err(_) => tokio::time::sleep(ACCEPT_PAUSE).await,
                        }
                    }
                })
            }
            _ => {
                return Err(format!(
                    "metrics: listener {name} is UDP; the metrics need a tcp or unix listener"
                ));
            }
        };
        self.serving = Some((key, task));
        Ok(())
    }
}

impl Drop for ScrapeServer {
    fn drop(&mut self) {
        if let Some((_, task)) = self.serving.take() {
            task.abort();
        }
    }
}

fn counts(refused: &[AtomicU64; 3]) -> [u64; 3] {
    [0, 1, 2].map(|i| refused[i].load(Ordering::Relaxed))
}

fn nonblocking(listener: &std::net::TcpListener) -> std::io::Result<()> {
    listener.set_nonblocking(true)
}

fn nonblocking_unix(listener: &std::os::unix::net::UnixListener) -> std::io::Result<()> {
    listener.set_nonblocking(true)
}

/// What every connection's task shares.
#[derive(Clone)]
struct Shared {
    readers: mpsc::Sender<StateReader>,
    refused: Arc<[AtomicU64; 3]>,
    slots: Arc<Semaphore>,
}

impl Shared {
    fn refuse(&self, reason: usize) {
        self.refused[reason].fetch_add(1, Ordering::Relaxed);
    }

    /// Answers one connection on a task of its own (or refuses it, past the limit).
    fn serve<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            // Closed at once: answering would cost what the limit is for.
            return self.refuse(2);
        };
        let shared = self.clone();
        tokio::spawn(async move {
            shared.answer(stream).await;
            drop(slot);
        });
    }

    async fn answer<S>(&self, mut stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let head = tokio::time::timeout(REQUEST_TIME, read_head(&mut stream)).await;
        let response = match head {
            Err(_) => {
                self.refuse(1);
                plain("408 Request Timeout", "the request took too long\n")
            }
            Ok(Err(Head::TooLarge)) => {
                self.refuse(0);
                plain(
                    "431 Request Header Fields Too Large",
                    "the request is too large\n",
                )
            }
            Ok(Err(Head::Closed)) => return,
            Ok(Ok(head)) => self.route(&head).await,
        };
        let _ = stream.write_all(&response).await;
        let _ = stream.shutdown().await;
    }

    /// `GET /metrics`, or 404.
    async fn route(&self, head: &[u8]) -> Vec<u8> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
            return plain("400 Bad Request", "malformed request\n");
        }
        let path = request.path.unwrap_or("");
        let path = path.split('?').next().unwrap_or(path);
        if !matches!(request.method, Some("GET" | "HEAD")) || path != "/metrics" {
            return plain("404 Not Found", "only GET /metrics is served here\n");
        }
        let accept = (request.headers.iter())
            .filter(|h| h.name.eq_ignore_ascii_case("accept"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .collect::<Vec<_>>()
            .join(",");
        let format = preferred(&accept);
        let (reply, text) = oneshot::channel();
        let refused = Arc::clone(&self.refused);
        let read: StateReader = Box::new(move |state| {
            let _ = reply.send(crate::supervisor::metrics::render(
                state,
                format,
                counts(&refused),
            ));
        });
        let asked = self.readers.send(read).await;
        let Ok(text) = (match asked {
            Ok(()) => text.await.map_err(|_| ()),
            Err(_) => Err(()),
        }) else {
            return plain("503 Service Unavailable", "the supervisor is stopping\n");
        };
        let body = if request.method == Some("HEAD") {
            ""
        } else {
            text.as_str()
        };
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            format.content_type(),
            text.len()
        )
        .into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// Why no request head was read.
enum Head {
    TooLarge,
    Closed,
}

/// Reads up to the end of the request's head, at most [`MAX_REQUEST`] bytes.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, Head> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(|_| Head::Closed)?;
        if n == 0 {
            return Err(Head::Closed);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(head);
        }
        if head.len() >= MAX_REQUEST {
            return Err(Head::TooLarge);
        }
    }
}

/// A short plain-text answer.
fn plain(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The format an `Accept` header prefers: the Prometheus text format if it ranks
/// `text/plain` above OpenMetrics, which is the answer otherwise.
pub(crate) fn preferred(accept: &str) -> Format {
    let mut openmetrics: Option<f32> = None;
    let mut plain: Option<f32> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let slot = match media.as_str() {
            "application/openmetrics-text" => &mut openmetrics,
            "text/plain" => &mut plain,
            _ => continue,
        };
        *slot = Some(slot.map_or(q, |had| had.max(q)));
    }
    match (openmetrics, plain) {
        (None, Some(_)) => Format::Prometheus,
        (Some(om), Some(p)) if p > om => Format::Prometheus,
        _ => Format::OpenMetrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_header_picks_the_format() {
        for (accept, format) in [
            ("", Format::OpenMetrics),
            ("*/*", Format::OpenMetrics),
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                Format::OpenMetrics,
            ),
            ("text/plain", Format::Prometheus),
            ("text/plain;version=0.0.4", Format::Prometheus),
            (
                "application/openmetrics-text;q=0.2, text/plain;q=0.9",
                Format::Prometheus,
            ),
            ("application/json", Format::OpenMetrics),
        ] {
            assert_eq!(preferred(accept), format, "{accept:?}");
        }
    }

    /// Answers `request` on one end of a socket pair, as the server would.
    async fn ask(request: &[u8]) -> String {
        let (readers, mut rx) = mpsc::channel::<StateReader>(1);
        let shared = Shared {
            readers,
            refused: Arc::default(),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        };
        tokio::spawn(async move {
            let state = crate::supervisor::machine::sample_state();
            while let Some(read) = rx.recv().await {
                read(&state);
            }
        });
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(request).await.expect("writes");
        shared.answer(server).await;
        let mut out = String::new();
        client.read_to_string(&mut out).await.expect("reads");
        out
    }

    #[tokio::test]
    async fn get_metrics_is_answered_and_anything_else_is_404() {
        let ok = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(
            ok.contains("\r\n\r\n# HELP littleboss_reloads_total"),
            "{ok}"
        );
        let om = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            om.contains("application/openmetrics-text; version=1.0.0"),
            "{om}"
        );
        for request in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        ] {
            let answer = ask(request).await;
            assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        }
        let garbage = ask(b"\x01\x02 nonsense\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    }

    #[tokio::test]
    async fn before_an_exec_the_scrapes_under_way_are_waited_for() {
        let (readers, _rx) = mpsc::channel::<StateReader>(1);
        let server = ScrapeServer::new(readers);
        // Nothing under way: at once.
        tokio::time::timeout(Duration::from_secs(5), server.answered())
            .await
            .expect("nothing to wait for");
        let slot = Arc::clone(&server.slots).try_acquire_owned().unwrap();
        let answered = server.answered();
        let mut answered = std::pin::pin!(answered);
        let waited = tokio::time::timeout(Duration::from_millis(50), answered.as_mut()).await;
        assert!(waited.is_err(), "a scrape under way is waited for");
        drop(slot);
        tokio::time::timeout(Duration::from_secs(5), answered)
            .await
            .expect("answered once it ends");
        // And scrapes are answered again after it.
        assert!(Arc::clone(&server.slots).try_acquire_owned().is_ok());
    }

    #[tokio::test]
    async fn a_request_too_large_is_refused_and_counted() {
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_REQUEST));
        let answer = ask(&big).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }
}
