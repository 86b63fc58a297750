//! A TLS connection served on after rustls let go of it: a stream of records protected
//! by the [`record_layer`](super::record_layer), read and written as plaintext, as
//! hyper wants a connection.
//!
//! A continued session lives by the rules it can keep. It has its traffic keys, not the
//! secrets they were derived from, so it cannot renew them: a `KeyUpdate` from the
//! client (or any other handshake message, a TLS 1.2 renegotiation included) ends the
//! connection with an alert. A `close_notify` is answered with one, and a shutdown
//! sends one. Any other alert, or a record that does not authenticate, ends it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::io::poll_read_more;
use super::record_layer::{
    ALERT, APPLICATION_DATA, HANDSHAKE, HEADER, MAX_PAYLOAD, MAX_PLAINTEXT, Opener, Sealer, Version,
};
use super::tls_session::{Info, Session};

/// Takes a session from rustls, between two requests, to go on with it here (see
/// [`Session::take`]); `incoming` is what came of the session after what rustls read
/// (see `whole_records`).
#[cfg(test)]
pub(crate) fn continue_from<IO>(
    io: IO,
    conn: tokio_rustls::rustls::ServerConnection,
    incoming: Vec<u8>,
) -> Result<ContinuedTls<IO>, String> {
    let (session, plain) = Session::take(conn, incoming, std::time::SystemTime::now())?;
    ContinuedTls::resume(io, session, plain)
}

/// How many records before a key's confidentiality limit a continued session asks to
/// be closed (at most half the limit): room for the response under way.
const LIMIT_MARGIN: u64 = 1 << 16;

/// The moment a continued session must end, gracefully: its age, or its records
/// nearing the confidentiality limit of its keys, which it cannot renew.
#[derive(Clone, Debug)]
pub(crate) struct Ending {
    at: tokio::time::Instant,
    near_limit: Arc<Signal>,
}

/// Set once, waking whoever waits.
#[derive(Debug, Default)]
struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Ending {
    /// Resolves once the session must end.
    pub(crate) async fn reached(&self) {
        let limit = async {
            loop {
                let notified = self.near_limit.notify.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if self.near_limit.set.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(self.at) => {}
            () = limit => {}
        }
    }
}

/// The alert descriptions sent or understood here (RFC 8446 section 6).
const CLOSE_NOTIFY: u8 = 0;
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const INTERNAL_ERROR: u8 = 80;
const NO_RENEGOTIATION: u8 = 100;
/// Alert levels (TLS 1.2; TLS 1.3 ignores them but for `close_notify`).
const WARNING: u8 = 1;
const FATAL: u8 = 2;

/// Handshake message types that may come after the handshake.
const CLIENT_HELLO: u8 = 1;
const KEY_UPDATE: u8 = 24;

/// A TLS session continued outside rustls, over `io`.
#[derive(Debug)]
pub(crate) struct ContinuedTls<IO> {
    io: IO,
    version: Version,
    opener: Opener,
    sealer: Sealer,
    /// Ciphertext read and not a whole record yet.
    incoming: Vec<u8>,
    /// Plaintext opened and not read yet, from `plain_at`.
    plain: Vec<u8>,
    plain_at: usize,
    /// Records sealed and not written yet, from `out_at`.
    outgoing: Vec<u8>,
    out_at: usize,
    /// The peer said `close_notify`: reads give the end of the stream.
    read_closed: bool,
    /// This side said `close_notify`.
    write_closed: bool,
    /// Why the session ended, once it has.
    failed: Option<String>,
    /// The confidentiality limit of its keys, in records.
    limit: u64,
    /// When its handshake was (ms since the Unix epoch), and so when it must end.
    handshake_ms: u64,
    ending: Ending,
    info: Info,
}

impl<IO> ContinuedTls<IO> {
    /// Goes on with the session over `io`: `incoming` is what was read of it and not
    /// opened yet (an unfinished record), `plain` what was opened and not read yet.
    pub(crate) fn new(
        io: IO,
        version: Version,
        opener: Opener,
        sealer: Sealer,
        incoming: Vec<u8>,
        plain: Vec<u8>,
    ) -> ContinuedTls<IO> {
        ContinuedTls {
            io,
            version,
            opener,
            sealer,
            incoming,
            plain,
            plain_at: 0,
            outgoing: Vec::new(),
            out_at: 0,
            read_closed: false,
            write_closed: false,
            failed: None,
            limit: u64::MAX,
            handshake_ms: 0,
            ending: Ending {
                at: far_future(),
                near_limit: Arc::default(),
            },
            info: Info::default(),
        }
    }

    /// Goes on with `session` over `io`, `plain` (opened and not read yet) first.
    pub(crate) fn resume(
        io: IO,
        session: Session,
        plain: Vec<u8>,
    ) -> Result<ContinuedTls<IO>, String> {
        let left = session
            .ends_at()
            .duration_since(std::time::SystemTime::now());
        let opener = Opener::new(session.rx).map_err(|e| e.to_string())?;
        let sealer = Sealer::new(session.tx).map_err(|e| e.to_string())?;
        let mut continued =
            ContinuedTls::new(io, session.version, opener, sealer, session.incoming, plain);
        continued.ending.at = tokio::time::Instant::now() + left.unwrap_or_default();
        continued.limit = session.limit;
        continued.handshake_ms = session.handshake_ms;
        continued.info = session.info;
        continued.check_limit();
        Ok(continued)
    }

    /// The session, to go on elsewhere: the stream, the session (what was read of an
    /// unfinished record with it) and the plaintext opened and not read yet. Refused
    /// once it has ended or while records are still to be written (flush first).
    pub(crate) fn into_session(self) -> Result<(IO, Session, Vec<u8>), String> {
        if !self.movable() {
            return Err("the TLS session has ended, or has records to write".to_string());
        }
        let session = Session {
            format: super::tls_session::FORMAT,
            version: self.version,
            tx: self.sealer.keys(),
            rx: self.opener.keys(),
            incoming: self.incoming,
            limit: self.limit,
            handshake_ms: self.handshake_ms,
            info: self.info,
        };
        let plain = self.plain[self.plain_at..].to_vec();
        Ok((self.io, session, plain))
    }

    /// What the handshake said of the peer.
    pub(crate) fn handshake(&self) -> &Info {
        &self.info
    }

    /// Whether it can go on elsewhere now: not ended, nothing left to write.
    pub(crate) fn movable(&self) -> bool {
        !self.read_closed
            && !self.write_closed
            && self.failed.is_none()
            && self.out_at == self.outgoing.len()
    }

    /// When it must end, gracefully.
    pub(crate) fn ending(&self) -> Ending {
        self.ending.clone()
    }

    /// Signals the end once either direction nears the confidentiality limit.
    fn check_limit(&self) {
        let near = self.limit - LIMIT_MARGIN.min(self.limit / 2);
        let signal = &self.ending.near_limit;
        if (self.sealer.seq() >= near || self.opener.seq() >= near)
            && !signal.set.swap(true, Ordering::AcqRel)
        {
            signal.notify.notify_waiters();
        }
    }

    /// Queues an alert; a fatal one ends the session, with `why`.
    fn alert(&mut self, level: u8, description: u8, why: Option<String>) {
        if !self.write_closed {
            let _ = self
                .sealer
                .seal(ALERT, &[level, description], &mut self.outgoing);
        }
        if let Some(why) = why {
            self.write_closed = true;
            self.failed = Some(why);
        }
    }

    /// Takes one whole record from `incoming`, if there is one, and acts on it.
    fn take_record(&mut self) -> Option<io::Result<()>> {
        if self.incoming.len() < HEADER {
            return None;
        }
        let header: [u8; HEADER] = self.incoming[..HEADER].try_into().ok()?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len > MAX_PAYLOAD {
            self.alert(
                FATAL,
                UNEXPECTED_MESSAGE,
                Some(format!("a record of {len} bytes")),
            );
            return Some(Err(self.error()));
        }
        if self.incoming.len() < HEADER + len {
            return None;
        }
        let mut payload: Vec<u8> = self.incoming.drain(..HEADER + len).skip(HEADER).collect();
        let opened = self.opener.open(header, &mut payload);
        self.check_limit();
        let (kind, plain) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                self.alert(FATAL, BAD_RECORD_MAC, Some(e.to_string()));
                return Some(Err(self.error()));
            }
        };
        match kind {
            APPLICATION_DATA => {
                if self.plain_at == self.plain.len() {
                    self.plain.clear();
                    self.plain_at = 0;
                }
                self.plain.extend_from_slice(plain);
            }
            ALERT if plain.len() == 2 && plain[1] == CLOSE_NOTIFY => {
                self.read_closed = true;
                // Answered, as RFC 8446 section 6.1 asks.
                if !self.write_closed {
                    self.alert(WARNING, CLOSE_NOTIFY, None);
                    self.write_closed = true;
                }
            }
            ALERT => {
                let what = plain.get(1).copied().unwrap_or(0);
                self.failed = Some(format!("the peer sent alert {what}"));
                self.write_closed = true;
                return Some(Err(self.error()));
            }
            HANDSHAKE => {
                let (description, why) = match (plain.first().copied(), self.version) {
                    (Some(KEY_UPDATE), Version::Tls13) => (
                        INTERNAL_ERROR,
                        "the peer asked for new keys, which a moved session cannot make",
                    ),
                    (Some(CLIENT_HELLO), Version::Tls12) => (
                        NO_RENEGOTIATION,
                        "the peer asked to renegotiate, which a moved session cannot do",
                    ),
                    _ => (UNEXPECTED_MESSAGE, "the peer sent a handshake message"),
                };
                let level = if description == NO_RENEGOTIATION {
                    WARNING
                } else {
                    FATAL
                };
                self.alert(level, description, Some(why.to_string()));
                return Some(Err(self.error()));
            }
            other => {
                self.alert(
                    FATAL,
                    UNEXPECTED_MESSAGE,
                    Some(format!("a record of type {other}")),
                );
                return Some(Err(self.error()));
            }
        }
        Some(Ok(()))
    }

    fn error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            self.failed
                .clone()
                .unwrap_or_else(|| "the TLS session ended".to_string()),
        )
    }
}

impl<IO: AsyncWrite + Unpin> ContinuedTls<IO> {
    /// Writes what is sealed and not written yet.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.outgoing.clear();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ContinuedTls<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // Alerts queued by what was read go out as soon as they can.
            let _ = this.poll_send(cx);
            if this.plain_at < this.plain.len() {
                let n = (this.plain.len() - this.plain_at).min(buf.remaining());
                buf.put_slice(&this.plain[this.plain_at..this.plain_at + n]);
                this.plain_at += n;
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            if this.failed.is_some() {
                return Poll::Ready(Err(this.error()));
            }
            match this.take_record() {
                Some(Ok(())) => continue,
                Some(Err(e)) => {
                    let _ = this.poll_send(cx);
                    return Poll::Ready(Err(e));
                }
                None => {}
            }
            if ready!(poll_read_more(&mut this.io, cx, &mut this.incoming))? == 0 {
                // The end of the stream without `close_notify`: a truncation that
                // hyper sees as the end.
                this.read_closed = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ContinuedTls<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.write_closed {
            return Poll::Ready(Err(this.error()));
        }
        // One record's worth waits at most: what is sealed goes out first.
        ready!(this.poll_send(cx))?;
        let n = buf.len().min(MAX_PLAINTEXT);
        this.sealer
            .seal(APPLICATION_DATA, &buf[..n], &mut this.outgoing)
            .map_err(|e| io::Error::other(e.to_string()))?;
        this.check_limit();
        let _ = this.poll_send(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.write_closed {
            this.alert(WARNING, CLOSE_NOTIFY, None);
            this.write_closed = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// A moment that does not come (tokio's own "far future": about 30 years).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use zeroize::Zeroizing;

    use super::super::record_layer::tests::{
        client_after_ping, configs, server_after_ping, session, suites,
    };
    use super::super::record_layer::{Keys, Opener, Sealer};
    use super::*;

    /// The same keys again (what the peer holds for this direction).
    fn copy(keys: &Keys) -> Keys {
        Keys {
            aead: keys.aead,
            version: keys.version,
            key: Zeroizing::new(keys.key.to_vec()),
            iv: keys.iv.clone(),
            seq: keys.seq,
        }
    }

    /// A session of `tx` and `rx`, its handshake `age` ago, its keys' limit `limit`.
    fn moved(tx: Keys, rx: Keys, age: Duration, limit: u64) -> Session {
        let at = std::time::SystemTime::now() - age;
        let handshake_ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        Session {
            format: super::super::tls_session::FORMAT,
            version: tx.version,
            tx,
            rx,
            incoming: Vec::new(),
            limit,
            handshake_ms: handshake_ms as u64,
            info: Info::default(),
        }
    }

    /// A moved session cannot renew its keys: it asks to end a day after its
    /// handshake, and as its records near the confidentiality limit, and not before.
    #[tokio::test]
    async fn a_moved_session_must_end_a_day_after_its_handshake_or_near_its_keys_limit() {
        let (suite, tls) = suites()[0];
        let soon = Duration::from_millis(50);
        let (_client, tx, rx) = session(suite, tls);
        let (_peer, io) = tokio::io::duplex(1 << 16);
        let day = super::super::tls_session::MAX_AGE;
        let old = moved(tx, rx, day + Duration::from_secs(1), u64::MAX);
        let old = ContinuedTls::resume(io, old, Vec::new()).unwrap();
        let ending = old.ending();
        tokio::time::timeout(soon, ending.reached())
            .await
            .expect("a day old");

        let (_client, tx, rx) = session(suite, tls);
        let (mut peer, io) = tokio::io::duplex(1 << 16);
        let start = tx.seq;
        // It asks to end at half the limit (less than the margin): 10 records on.
        let young = moved(tx, rx, Duration::ZERO, 2 * (start + 10));
        let mut young = ContinuedTls::resume(io, young, Vec::new()).unwrap();
        let ending = young.ending();
        assert!(tokio::time::timeout(soon, ending.reached()).await.is_err());
        for _ in 0..9 {
            young.write_all(b"x").await.unwrap();
        }
        assert!(tokio::time::timeout(soon, ending.reached()).await.is_err());
        young.write_all(b"x").await.unwrap();
        tokio::time::timeout(soon, ending.reached())
            .await
            .expect("near the limit");
        drop(young);
        let mut wire = Vec::new();
        peer.read_to_end(&mut wire).await.unwrap();
        assert!(!wire.is_empty());
    }

    /// A continued session goes on elsewhere with its sequence numbers, the unfinished
    /// record it had read and the plaintext nobody read, and not once it has ended.
    #[tokio::test]
    async fn a_continued_session_moves_on_with_what_it_holds() {
        let (suite, tls) = suites()[0];
        let (_client, tx, rx) = session(suite, tls);
        let (tx_seq, rx_seq) = (tx.seq, rx.seq);
        let (_peer, io) = tokio::io::duplex(1 << 16);
        let session = moved(tx, rx, Duration::ZERO, u64::MAX);
        let mut continued = ContinuedTls::resume(io, session, b"GET /".to_vec()).unwrap();
        continued.incoming = vec![23, 3, 3, 0, 40, 1];
        let mut first = [0u8; 3];
        continued.read_exact(&mut first).await.unwrap();
        continued.write_all(b"answer").await.unwrap();
        continued.flush().await.unwrap();
        assert!(continued.movable());
        let (_io, session, plain) = continued.into_session().unwrap();
        assert_eq!(plain, b" /");
        assert_eq!(session.incoming, [23, 3, 3, 0, 40, 1]);
        assert_eq!((session.tx.seq, session.rx.seq), (tx_seq + 1, rx_seq));
        let encoded = session.encode().unwrap();
        let again = Session::decode(&encoded).unwrap();
        assert_eq!(again.tx.seq, tx_seq + 1);

        let (_client, tx, rx) = session_of_suite();
        let (peer, io) = tokio::io::duplex(1 << 16);
        drop(peer);
        let session = moved(tx, rx, Duration::ZERO, u64::MAX);
        let mut ended = ContinuedTls::resume(io, session, Vec::new()).unwrap();
        let mut rest = Vec::new();
        ended.read_to_end(&mut rest).await.unwrap();
        assert!(!ended.movable());
        assert!(ended.into_session().is_err());
    }

    fn session_of_suite() -> (tokio_rustls::rustls::ClientConnection, Keys, Keys) {
        let (suite, tls) = suites()[0];
        session(suite, tls)
    }

    #[tokio::test]
    async fn a_renegotiation_asked_in_tls_1_2_gets_no_renegotiation_and_ends_it() {
        let tls12 = suites()
            .into_iter()
            .find(|(_, tls)| tls.version == tokio_rustls::rustls::ProtocolVersion::TLSv1_2)
            .unwrap();
        let (_client, tx, rx) = session(tls12.0, tls12.1);
        // The client's side of both directions, to forge its record and read ours.
        let mut client_sealer = Sealer::new(copy(&rx)).unwrap();
        let mut client_opener = Opener::new(copy(&tx)).unwrap();
        let mut hello = Vec::new();
        client_sealer
            .seal(HANDSHAKE, &[CLIENT_HELLO, 0, 0, 0], &mut hello)
            .unwrap();
        let (mut peer, io) = tokio::io::duplex(1 << 16);
        let opener = Opener::new(rx).unwrap();
        let sealer = Sealer::new(tx).unwrap();
        let mut continued =
            ContinuedTls::new(io, Version::Tls12, opener, sealer, hello, Vec::new());
        let mut byte = [0u8; 1];
        let error = continued.read_exact(&mut byte).await.unwrap_err();
        assert!(error.to_string().contains("renegotiate"), "{error}");
        drop(continued);
        let mut wire = Vec::new();
        peer.read_to_end(&mut wire).await.unwrap();
        let header: [u8; HEADER] = wire[..HEADER].try_into().unwrap();
        let (kind, alert) = client_opener.open(header, &mut wire[HEADER..]).unwrap();
        assert_eq!((kind, alert), (ALERT, &[WARNING, NO_RENEGOTIATION][..]));
    }

    #[tokio::test]
    async fn a_session_goes_on_after_rustls_in_every_suite_and_closes_cleanly() {
        for (suite, tls) in suites() {
            let name = format!("{:?}", suite.suite());
            let (server_config, client_config) = configs(suite, tls);
            let (client_io, server_io) = tokio::io::duplex(1 << 16);
            let server = tokio::spawn(async move {
                let tls = server_after_ping(server_config, server_io).await;
                let (io, conn) = tls.into_inner();
                let mut continued = continue_from(io, conn, Vec::new()).unwrap();
                let mut big = vec![0u8; 40_000];
                continued.read_exact(&mut big).await.unwrap();
                continued.write_all(&big).await.unwrap();
                continued.flush().await.unwrap();
                let mut rest = Vec::new();
                continued.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty());
                continued.shutdown().await.unwrap();
            });
            let mut client = client_after_ping(client_config, client_io).await;
            let big: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
            client.write_all(&big).await.unwrap();
            client.flush().await.unwrap();
            let mut back = vec![0u8; big.len()];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(back, big, "{name}");
            // `close_notify` from the client is answered with one: a clean end.
            client.shutdown().await.unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "{name}");
            server.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_key_update_from_the_client_ends_the_session_with_an_alert() {
        let (suite, tls) = suites()[0];
        let (server_config, client_config) = configs(suite, tls);
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let tls = server_after_ping(server_config, server_io).await;
            let (io, conn) = tls.into_inner();
            let mut continued = continue_from(io, conn, Vec::new()).unwrap();
            let mut byte = [0u8; 1];
            continued.read_exact(&mut byte).await.unwrap_err()
        });
        let mut client = client_after_ping(client_config, client_io).await;
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(b"x").await.unwrap();
        client.flush().await.unwrap();
        let error = server.await.unwrap();
        assert!(error.to_string().contains("new keys"), "{error}");
        // The client is told: its next read fails with the alert, or ends.
        let mut rest = Vec::new();
        let read = client.read_to_end(&mut rest).await;
        assert!(read.is_err() || rest.is_empty(), "{read:?}");
    }
}
