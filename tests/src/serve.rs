//! The tiny servers of the helper programs (`src/bin/*.rs`), on tokio, and what they answer.
//!
//! - [`greeting`]: `pid PID exe EXE mode MODE\n`, what most helpers answer
//!   ([`Answer`](crate::Answer) parses it), and [`response`], an HTTP/1.1 `200 OK`.
//! - [`take_http`]: the `http` listener, announced on stderr.
//! - [`accept_until`]: the accept loop they share. It runs until lameduck, then stops
//!   accepting by closing this process's copy of the listening socket (the socket is
//!   shared with the supervisor and the next child: it is never shut down) and hands
//!   back the connections still being answered.
//! - [`serve_http`]: every request answered with one response and `Connection: close`
//!   ([`answer_once`]), the greeting with [`serve_greeting`]; [`serve_lines`]: every
//!   connection given one line and closed, the client sends nothing.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use littleboss::{Context, Mode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinSet;

/// How long a client may take to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head read.
pub const MAX_HEAD: usize = 64 * 1024;

/// How long the accept loop pauses after a failed accept (out of fds, most likely),
/// instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// `bypass` or `supervised` (`other` for a mode of a later release, which no test
/// expects).
pub fn mode_name(lb: &Context) -> &'static str {
    match lb.mode() {
        Mode::Bypass => "bypass",
        Mode::Supervised => "supervised",
        _ => "other",
    }
}

/// `pid PID exe EXE mode MODE\n` for this process.
pub fn greeting(lb: &Context) -> io::Result<Arc<str>> {
    let exe = std::env::current_exe()?;
    Ok(format!(
        "pid {} exe {} mode {}\n",
        std::process::id(),
        exe.display(),
        mode_name(lb)
    )
    .into())
}

/// Takes listener `http` and says so on stderr: `PROGRAM: pid PID serving http on ADDR`,
/// the line [`Spawned::wait_serving`](crate::Spawned::wait_serving) reads.
pub fn take_http(lb: &Context, program: &str) -> io::Result<TcpListener> {
    let listener = lb.tcp_listener("http")?;
    crate::say!(
        "{program}: pid {} serving http on {}",
        std::process::id(),
        listener.local_addr()?
    );
    Ok(listener)
}

/// An HTTP/1.1 `200 OK` response with `body` of type `content_type`, and
/// `Connection: close` if `close`.
pub fn response(content_type: &str, body: &str, close: bool) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
}

/// A tokio listener that [`accept_until`] takes connections from.
pub trait Listener {
    /// A connection it accepted.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Accepts the next connection.
    fn accept_stream(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept_stream(&self) -> io::Result<TcpStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;

    async fn accept_stream(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

/// Accepts connections on `listener` until `until` resolves (`lb.lameduck()`), and
/// answers each with `answer`, as a task. A failed accept is reported on stderr as
/// `WHO: ERROR`, followed by a short pause. Then it closes `listener` (this process's
/// copy only) and returns the tasks of the connections still open, for the caller to
/// finish.
pub async fn accept_until<L, A, F>(
    listener: L,
    until: impl Future<Output = ()>,
    who: &str,
    mut answer: A,
) -> JoinSet<()>
where
    L: Listener,
    A: FnMut(L::Stream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut until = std::pin::pin!(until);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut until => break,
            accepted = listener.accept_stream() => match accepted {
                Ok(stream) => {
                    connections.spawn(answer(stream));
                }
                Err(e) => {
                    crate::say!("{who}: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections
}

/// Waits for every connection [`accept_until`] handed back.
pub async fn finish(mut connections: JoinSet<()>) {
    while connections.join_next().await.is_some() {}
}

/// Reads until the end of a request head: `Ok(true)` once `\r\n\r\n` arrived,
/// `Ok(false)` if the client closed first or sent more than [`MAX_HEAD`] bytes.
pub async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<bool> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(false);
        }
        head.extend_from_slice(&buf[..n]);
        if end_of_head(&head).is_some() {
            return Ok(true);
        }
    }
}

/// The length of the request or response head at the start of `bytes`, its final empty
/// line included, once it is all there.
pub fn end_of_head(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Reads one request head (within [`REQUEST_TIMEOUT`]), waits `delay`, writes
/// `response` and closes the connection; errors only end it.
pub async fn answer_once(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    response: Arc<str>,
    delay: Duration,
) {
    let read = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await;
    if !matches!(read, Ok(Ok(true))) {
        return;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if stream.write_all(response.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Serves `listener` until `until` resolves (`lb.lameduck()`), answering every request
/// with `body` (of type `content_type`) and `Connection: close`; then finishes the
/// connections it has. A failed accept is reported on stderr as `WHO: ERROR`.
pub async fn serve_http(
    listener: impl Listener,
    until: impl Future<Output = ()>,
    who: &str,
    content_type: &str,
    body: &str,
) {
    let response: Arc<str> = response(content_type, body, true).into();
    let connections = accept_until(listener, until, who, |stream| {
        answer_once(stream, Arc::clone(&response), Duration::ZERO)
    })
    .await;
    finish(connections).await;
}

/// [`serve_http`] until lameduck with the [`greeting`] of this process, as `text/plain`.
pub async fn serve_greeting(listener: impl Listener, lb: &Context, who: &str) -> io::Result<()> {
    let greeting = greeting(lb)?;
    serve_http(listener, lb.lameduck(), who, "text/plain", &greeting).await;
    Ok(())
}

/// Serves `listener` until `until` resolves (`lb.lameduck()`): every connection gets
/// `line` and is closed (the client sends nothing); then finishes the connections it
/// has. A failed accept is reported on stderr as `WHO: ERROR`.
pub async fn serve_lines(
    listener: impl Listener,
    until: impl Future<Output = ()>,
    who: &str,
    line: Arc<str>,
) {
    let connections = accept_until(listener, until, who, |mut stream| {
        let line = Arc::clone(&line);
        async move {
            if stream.write_all(line.as_bytes()).await.is_ok() {
                let _ = stream.shutdown().await;
            }
        }
    })
    .await;
    finish(connections).await;
}
