//! The socket as rustls reads it when its connection may move: whole TLS records only.
//!
//! rustls keeps what it read of an unfinished record inside, where nothing can take
//! it out; a session taken from it (`dangerous_extract_secrets`) would lose those
//! bytes. Read through [`WholeRecords`], rustls is given a record only once all of it
//! has come (its 5-byte header says how long it is), so that between two records it
//! holds no ciphertext: what has come of the next one stays here, and moves with the
//! connection ([`WholeRecords::into_parts`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use super::io::poll_read_more;
use super::record_layer::{HEADER, MAX_PAYLOAD};

/// `IO`, whose reads give whole TLS records only.
#[derive(Debug)]
pub(crate) struct WholeRecords<IO> {
    io: IO,
    /// What was read and not given yet: whole records first, then part of one.
    held: Vec<u8>,
    /// What is still to give of a record given in parts (to a reader whose buffer is
    /// smaller than the record): it is whole in `held`, and rustls, which needs it
    /// whole, reads on until it has it.
    owed: usize,
}

impl<IO> WholeRecords<IO> {
    pub(crate) fn new(io: IO) -> WholeRecords<IO> {
        WholeRecords {
            io,
            held: Vec::new(),
            owed: 0,
        }
    }

    /// Whether no record has been given in part: rustls holds no ciphertext.
    pub(crate) fn between_records(&self) -> bool {
        self.owed == 0
    }

    /// The stream, and what was read of it and not given (an unfinished record, or
    /// records not asked for yet).
    pub(crate) fn into_parts(self) -> (IO, Vec<u8>) {
        (self.io, self.held)
    }

    /// How many bytes at the start of `held` are whole records (at most `room`, but at
    /// least one record if one is whole), or `None` if a header is not one.
    fn whole(&self, room: usize) -> Option<usize> {
        let mut end = 0;
        loop {
            let rest = &self.held[end..];
            if rest.len() < HEADER {
                return Some(end);
            }
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            if len > MAX_PAYLOAD {
                return None;
            }
            if rest.len() < HEADER + len || (end > 0 && end + HEADER + len > room) {
                return Some(end);
            }
            end += HEADER + len;
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WholeRecords<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // What may go up now: the rest of a record given in part, whole records,
            // or, if a header is not one, everything (rustls, given it, says it is not
            // TLS).
            let ready = match this.owed {
                0 => this.whole(buf.remaining()).unwrap_or(this.held.len()),
                owed => owed,
            };
            if ready > 0 {
                // A record larger than what is asked is given in parts, the rest
                // owed (see `owed`).
                let n = ready.min(buf.remaining());
                buf.put_slice(&this.held[..n]);
                this.held.drain(..n);
                this.owed = ready - n;
                return Poll::Ready(Ok(()));
            }
            if ready!(poll_read_more(&mut this.io, cx, &mut this.held))? == 0 {
                if this.held.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                // The end: what is held of an unfinished record goes up, for rustls
                // to see the truncation.
                this.owed = this.held.len();
            }
        }
    }
}

super::io::write_through!(WholeRecords, io);

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::continued_tls::continue_from;
    use super::super::record_layer::tests::{
        client_after_ping, configs, server_after_ping, suites,
    };
    use super::*;

    /// A reader that gives `bytes` a few at a time.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .step
                .min(self.bytes.len() - self.at)
                .min(buf.remaining());
            if n == 0 {
                return Poll::Pending;
            }
            let at = self.at;
            buf.put_slice(&self.bytes[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    fn record(len: usize, fill: u8) -> Vec<u8> {
        let mut record = vec![23, 3, 3, (len >> 8) as u8, len as u8];
        record.extend(std::iter::repeat_n(fill, len));
        record
    }

    #[tokio::test]
    async fn only_whole_records_are_given_however_the_bytes_come() {
        let stream = [record(10, 1), record(300, 2), record(0, 3), record(5000, 4)].concat();
        for step in [1, 2, 4, 5, 7, 100, 4096] {
            let io = Trickle {
                bytes: stream[..stream.len() - 3].to_vec(),
                at: 0,
                step,
            };
            let mut whole = WholeRecords::new(io);
            let mut given = Vec::new();
            let mut buf = vec![0u8; 20_000];
            // Reads until nothing more comes: the fourth record lacks its last 3 bytes.
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            loop {
                let mut read = ReadBuf::new(&mut buf);
                match Pin::new(&mut whole).poll_read(&mut cx, &mut read) {
                    Poll::Ready(Ok(())) => given.extend_from_slice(read.filled()),
                    Poll::Ready(Err(e)) => panic!("step {step}: {e}"),
                    Poll::Pending => break,
                }
            }
            let whole_three = 10 + 300 + 3 * HEADER;
            assert_eq!(given, stream[..whole_three], "step {step}");
            assert!(whole.between_records());
            let (_, held) = whole.into_parts();
            assert_eq!(held, stream[whole_three..stream.len() - 3], "step {step}");
        }
    }

    #[tokio::test]
    async fn a_record_larger_than_the_reader_asks_is_given_in_parts_and_owed() {
        let stream = [record(100, 1), record(10, 2)].concat();
        let io = Trickle {
            bytes: stream.clone(),
            at: 0,
            step: 4096,
        };
        let mut whole = WholeRecords::new(io);
        let mut small = [0u8; 40];
        let n = whole.read(&mut small).await.unwrap();
        assert_eq!(n, 40);
        assert!(!whole.between_records());
        let mut rest = vec![0u8; 1000];
        let n = whole.read(&mut rest).await.unwrap();
        assert_eq!(n, HEADER + 100 - 40, "the rest of the first record, alone");
        assert!(whole.between_records());
        let n = whole.read(&mut rest).await.unwrap();
        assert_eq!(&rest[..n], &stream[HEADER + 100..]);
    }

    #[tokio::test]
    async fn rustls_reads_through_it_and_a_session_taken_between_records_goes_on() {
        for (suite, tls) in suites() {
            let (server_config, client_config) = configs(suite, tls);
            let (client_io, server_io) = tokio::io::duplex(1 << 16);
            let server = tokio::spawn(async move {
                let tls = server_after_ping(server_config, WholeRecords::new(server_io)).await;
                // The client's next request may be under way: what rustls has not
                // been given stays with the stream, and the continued session starts
                // from it.
                let (whole, conn) = tls.into_inner();
                assert!(whole.between_records());
                let (io, held) = whole.into_parts();
                let mut continued = continue_from(io, conn, held).unwrap();
                let mut next = [0u8; 5];
                continued.read_exact(&mut next).await.unwrap();
                continued.write_all(&next).await.unwrap();
                continued.flush().await.unwrap();
            });
            let mut client = client_after_ping(client_config, client_io).await;
            client.write_all(b"again").await.unwrap();
            client.flush().await.unwrap();
            let mut back = [0u8; 5];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"again");
            server.await.unwrap();
        }
    }
}
