//! Support for the reload tests (`tests/reload.rs`) and their helper programs
//! (`src/bin/lb-reload-*.rs`).
//!
//! - [`serve`]: the server side of the helpers, an HTTP/1.1 server with keep-alive that
//!   winds down the way a reload needs: at lameduck it stops accepting (drops its copy
//!   of the shared listener), answers each connection's next request with
//!   `Connection: close`, and closes a connection that sends nothing only
//!   [`IDLE_GRACE`] after lameduck. Every answer is `pid PID exe EXE mode MODE\n`
//!   ([`greeting`]), as `lb-http`'s.
//! - [`KeepAlive`]: the client side, one HTTP/1.1 connection kept alive across requests,
//!   which tells a complete response from an early end of the connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use littleboss::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::HTTP_TIMEOUT;
use crate::serve::{MAX_HEAD, accept_until, end_of_head, finish, greeting};
use std::path::Path;

/// How long after lameduck a connection that has not sent a request is kept open: a
/// request already on its way on an idle keep-alive connection is still answered.
/// Shorter than the helpers' `lameduck` option, so that they are never killed for it.
pub const IDLE_GRACE: Duration = Duration::from_secs(2);

/// Serves `listener` until lameduck, then stops accepting and finishes its connections
/// (see the module documentation). `program` names the helper in its stderr lines:
/// `PROGRAM: pid PID lameduck` once it stops accepting.
pub async fn serve(
    listener: tokio::net::TcpListener,
    lb: Context,
    program: &str,
) -> io::Result<()> {
    let pid = std::process::id();
    let greeting = greeting(&lb)?;
    let connections = accept_until(
        listener,
        lb.lameduck(),
        &format!("{program}: pid {pid} accept"),
        |stream| connection(stream, lb.clone(), Arc::clone(&greeting)),
    )
    .await;
    // The listener is closed: this process's copy of the listening socket only. The
    // supervisor and the new child hold the same socket, and the connections in its
    // queue are theirs.
    eprintln!("{program}: pid {pid} lameduck");
    finish(connections).await;
    Ok(())
}

/// Answers the requests of one connection until the client closes it, asks for
/// `Connection: close`, or lameduck comes (see the module documentation).
async fn connection(mut stream: tokio::net::TcpStream, lb: Context, greeting: Arc<str>) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    loop {
        let head = tokio::select! {
            head = read_head(&mut stream, &mut buffer) => head,
            _ = idle_limit(&lb) => return,
        };
        let Ok(Some(head)) = head else { return };
        let close = lb.is_lameduck() || asks_to_close(&head);
        let response = crate::serve::response("text/plain", &greeting, close);
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Resolves [`IDLE_GRACE`] after lameduck.
async fn idle_limit(lb: &Context) {
    lb.lameduck().await;
    tokio::time::sleep(IDLE_GRACE).await;
}

/// Reads until `buffer` holds a whole request head, and takes it out of `buffer` (what
/// follows it stays there). `None` if the client closed first or sent too much.
/// Cancel-safe: the bytes read so far are in `buffer`.
async fn read_head(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> io::Result<Option<String>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = end_of_head(buffer) {
            let head: Vec<u8> = buffer.drain(..end).collect();
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        if buffer.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Whether a request head has `Connection: close`.
fn asks_to_close(head: &str) -> bool {
    header(head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// The value of header `name` (lower case) in a head, if it is there.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// A complete HTTP response read by [`KeepAlive::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// `200`, ...
    pub status: u16,
    /// The body.
    pub body: String,
    /// Whether the server said `Connection: close` (it closes the connection after it).
    pub close: bool,
}

/// One HTTP/1.1 connection kept alive across requests (blocking, with
/// [`HTTP_TIMEOUT`] on every read and write).
#[derive(Debug)]
pub struct KeepAlive {
    stream: TcpStream,
    /// Bytes read past the last response.
    buffer: Vec<u8>,
}

impl KeepAlive {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<KeepAlive> {
        let stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
        stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
        stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive {
            stream,
            buffer: Vec::new(),
        })
    }

    /// `GET /` on this connection; the whole response (head and `Content-Length` body),
    /// or an error if the connection ends or fails before it is complete.
    pub fn get(&mut self) -> io::Result<Response> {
        self.get_path("/")
    }

    /// `GET PATH` on this connection, as [`get`](Self::get).
    pub fn get_path(&mut self, path: &str) -> io::Result<Response> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        self.stream.write_all(request.as_bytes())?;
        let end = loop {
            if let Some(end) = end_of_head(&self.buffer) {
                break end;
            }
            self.fill("the response head")?;
        };
        let head: Vec<u8> = self.buffer.drain(..end).collect();
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid(format!("not an HTTP/1.1 response: {head:?}")))?;
        let length: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid(format!("no Content-Length in {head:?}")))?;
        while self.buffer.len() < length {
            self.fill("the response body")?;
        }
        let body: Vec<u8> = self.buffer.drain(..length).collect();
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            close: asks_to_close(&head),
        })
    }

    /// Reads what follows the last response: `Ok(())` if the server closed the
    /// connection cleanly (end of file, no byte more), an error otherwise (a reset, a
    /// timeout, or unexpected bytes).
    pub fn expect_clean_close(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 1024];
        match crate::again_if_interrupted(|| self.stream.read(&mut chunk))? {
            0 if self.buffer.is_empty() => Ok(()),
            0 => Err(invalid(format!("{} stray bytes", self.buffer.len()))),
            n => Err(invalid(format!(
                "expected the end of the connection, got {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ))),
        }
    }

    /// Reads more bytes into the buffer; the end of the connection is an error here.
    fn fill(&mut self, what: &str) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = crate::again_if_interrupted(|| self.stream.read(&mut chunk))?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the connection ended before {what} was complete ({} bytes of it)",
                    self.buffer.len()
                ),
            ));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// How often [`wait_for_gate`] looks for the gate file.
const GATE_POLL: Duration = Duration::from_millis(10);

/// Waits until the file `gate` exists, as a program still setting up would; `false` if
/// lameduck came first.
pub async fn wait_for_gate(lb: &Context, gate: &Path) -> bool {
    let opened = async {
        while !gate.exists() {
            tokio::time::sleep(GATE_POLL).await;
        }
    };
    tokio::select! {
        () = opened => true,
        () = lb.lameduck() => false,
    }
}
