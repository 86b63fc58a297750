//! The connection's byte stream as hyper sees it: the bytes read while sniffing the
//! protocol, replayed first ([`Rewind`]), and a stream that comes back to the
//! connection's task when hyper (or an upgrade's owner) drops it ([`Returning`]), so
//! that the task can close it with a lingering close ([`linger`]).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;

use super::framing::Framing;
use crate::control::protocol::MAX_CARRIED;

/// The 24 bytes every HTTP/2 connection starts with (RFC 9113, section 3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection say it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Http1,
    Http2,
}

/// What the bytes read so far say the connection speaks: `None` while they could still
/// be the start of HTTP/2's preface.
pub(crate) fn classify(read: &[u8]) -> Option<Proto> {
    let k = read.len().min(PREFACE.len());
    if read[..k] != PREFACE[..k] {
        Some(Proto::Http1)
    } else if k == PREFACE.len() {
        Some(Proto::Http2)
    } else {
        None
    }
}

/// Whether `read` holds a whole HTTP/1 request head (or as much as moves with a
/// connection: then hyper has it).
pub(crate) fn head_complete(read: &[u8]) -> bool {
    read.len() >= MAX_CARRIED || read.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Reads once from `io` into `read`; the number of bytes, 0 at end of stream.
/// Cancel-safe.
///
/// The chunk read into lives on the stack of one poll, not in the future: a connection
/// that waits for its first bytes, as thousands do when they move, keeps no buffer.
pub(crate) async fn read_more<IO: AsyncRead + Unpin>(
    io: &mut IO,
    read: &mut Vec<u8>,
) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_read_more(io, cx, read)).await
}

/// [`read_more`], as a poll: what `io` has now (4 KiB at most) appended to `read`;
/// how many bytes, 0 at the end of the stream.
pub(crate) fn poll_read_more<IO: AsyncRead + Unpin>(
    io: &mut IO,
    cx: &mut Context<'_>,
    read: &mut Vec<u8>,
) -> Poll<io::Result<usize>> {
    let mut chunk = [0u8; 4096];
    let mut buf = ReadBuf::new(&mut chunk);
    ready!(Pin::new(io).poll_read(cx, &mut buf))?;
    read.extend_from_slice(buf.filled());
    Poll::Ready(Ok(buf.filled().len()))
}

/// Reads into `read` until the bytes read tell HTTP/2's preface from anything else,
/// and returns the protocol; `None` if the peer closed first. Cancel-safe: what was
/// read is in `read`.
pub(crate) async fn sniff<IO: AsyncRead + Unpin>(
    io: &mut IO,
    read: &mut Vec<u8>,
) -> io::Result<Option<Proto>> {
    loop {
        if let Some(proto) = classify(read) {
            return Ok(Some(proto));
        }
        if read_more(io, read).await? == 0 {
            return Ok(None);
        }
    }
}

/// A stream whose reads give `prefix` first, then the stream's own bytes; every byte
/// read is counted by its [`Framing`], if it has one.
#[derive(Debug)]
pub(crate) struct Rewind<IO> {
    prefix: Vec<u8>,
    at: usize,
    inner: IO,
    framing: Option<Arc<Mutex<Framing>>>,
}

impl<IO> Rewind<IO> {
    pub(crate) fn new(prefix: Vec<u8>, inner: IO) -> Rewind<IO> {
        Rewind {
            prefix,
            at: 0,
            inner,
            framing: None,
        }
    }

    /// As [`new`](Self::new), counting what is read in `framing`.
    pub(crate) fn framed(prefix: Vec<u8>, inner: IO, framing: Arc<Mutex<Framing>>) -> Rewind<IO> {
        Rewind {
            framing: Some(framing),
            ..Rewind::new(prefix, inner)
        }
    }

    /// The prefix not read yet, and the stream.
    pub(crate) fn into_parts(mut self) -> (Vec<u8>, IO) {
        let rest = self.prefix.split_off(self.at.min(self.prefix.len()));
        (rest, self.inner)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            Poll::Ready(Ok(()))
        } else {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        };
        if let (Poll::Ready(Ok(())), Some(framing)) = (&read, &this.framing) {
            framing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .feed(&buf.filled()[before..]);
        }
        read
    }
}

/// `AsyncWrite` for a reading wrapper (`$ty<IO>`): writes go straight to its `$field`.
macro_rules! write_through {
    ($ty:ident, $field:ident) => {
        impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $ty<IO> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$field).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$field).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$field).poll_shutdown(cx)
            }
        }
    };
}
#[cfg(feature = "rustls")]
pub(crate) use write_through;

write_through!(Rewind, inner);

/// A stream that, when dropped, goes back to whoever holds the receiver instead of
/// closing: the connection's task, which closes it with [`linger`]. If the receiver is
/// gone, it closes as any stream does.
///
/// Once [`kept`](Self::kept) is set, shutting it down does nothing: the connection is
/// about to move to another process, which goes on with it.
#[derive(Debug)]
pub(crate) struct Returning<IO> {
    io: Option<IO>,
    back: Option<oneshot::Sender<IO>>,
    kept: Arc<AtomicBool>,
}

impl<IO> Returning<IO> {
    pub(crate) fn new(io: IO) -> (Returning<IO>, oneshot::Receiver<IO>) {
        let (tx, rx) = oneshot::channel();
        (
            Returning {
                io: Some(io),
                back: Some(tx),
                kept: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    /// Set it to make shutting the stream down do nothing.
    pub(crate) fn kept(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.kept)
    }

    /// The stream itself, which then goes back to nobody.
    pub(crate) fn take(mut self) -> Option<IO> {
        self.io.take()
    }

    fn inner(&mut self) -> io::Result<&mut IO> {
        self.io
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the stream was returned"))
    }
}

impl<IO> Drop for Returning<IO> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            // A receiver that is gone drops the stream here: a plain close.
            let _ = back.send(io);
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Returning<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.inner() {
            Ok(io) => Pin::new(io).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Returning<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.inner() {
            Ok(io) => Pin::new(io).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.inner() {
            Ok(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner() {
            Ok(io) => Pin::new(io).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kept.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        match self.inner() {
            Ok(io) => Pin::new(io).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// Closes a connection without destroying what was written to it: shuts down the write
/// side (the peer reads the end of the response, then end of file), then reads and
/// discards until the peer closes too or `limit` passes. Closing a socket that has
/// unread input sends an RST, and an RST can make the peer's kernel throw away a
/// response it has received but its program has not read yet.
pub(crate) async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        if io.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0u8; 4096];
        while let Ok(n) = io.read(&mut sink).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sniff_tells_http2_from_http1() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&PREFACE[..10]).await.unwrap();
        client.write_all(&PREFACE[10..]).await.unwrap();
        client.write_all(b"rest").await.unwrap();
        let mut read = Vec::new();
        let proto = sniff(&mut server, &mut read).await.unwrap().unwrap();
        assert_eq!(proto, Proto::Http2);
        assert!(read.starts_with(PREFACE));

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PRIVATE / HTTP/1.1\r\n").await.unwrap();
        let mut read = Vec::new();
        let proto = sniff(&mut server, &mut read).await.unwrap().unwrap();
        assert_eq!(proto, Proto::Http1);
        assert_eq!(read, b"PRIVATE / HTTP/1.1\r\n");

        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(sniff(&mut server, &mut Vec::new()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rewind_replays_the_prefix_then_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut rewind = Rewind::new(b"hello".to_vec(), server);
        let mut all = String::new();
        rewind.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }

    #[tokio::test]
    async fn a_returning_stream_comes_back_when_dropped() {
        let (_client, server) = tokio::io::duplex(64);
        let (returning, back) = Returning::new(server);
        drop(returning);
        assert!(back.await.is_ok());
    }
}
