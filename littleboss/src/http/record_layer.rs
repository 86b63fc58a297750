//! A TLS session continued outside rustls: the record protection of one direction,
//! from the keys rustls hands over (`dangerous_extract_secrets`), with `ring::aead`.
//!
//! This is what lets a TLS connection move to another process: rustls cannot be
//! rebuilt from its keys, but a session between two handshakes is only records, each
//! protected by the direction's AEAD key, a nonce made of its IV and the record's
//! sequence number, and (in TLS 1.2) a header in the additional data. The framing and
//! nonce rules are those of RFC 8446 section 5 (TLS 1.3) and RFC 5246 section 6.2 with
//! RFC 5288 and RFC 7905 (TLS 1.2 with AES-GCM and ChaCha20-Poly1305). No cryptographic
//! primitive is written here: ring seals and opens.
//!
//! The keys are secrets: they live in [`Keys`], which zeroes them when dropped and
//! shows none of them in its `Debug`, until [`Sealer::new`] and [`Opener::new`] give
//! them to ring.

use std::fmt;

use ring::aead::{
    AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The largest plaintext of one record (RFC 8446 section 5.1).
pub(crate) const MAX_PLAINTEXT: usize = 1 << 14;

/// The length of a record's header: type, version, length.
pub(crate) const HEADER: usize = 5;

/// The largest payload of a protected record, TLS 1.3 (RFC 8446 section 5.2) and
/// TLS 1.2 (RFC 5246 section 6.2.3) alike.
pub(crate) const MAX_PAYLOAD: usize = MAX_PLAINTEXT + 2048;

/// `application_data`, the outer type of every TLS 1.3 record once keys are in use.
pub(crate) const APPLICATION_DATA: u8 = 23;
/// `alert`.
pub(crate) const ALERT: u8 = 21;
/// `handshake`.
pub(crate) const HANDSHAKE: u8 = 22;

/// The AEAD of a session's suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Aead {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Aead {
    fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            Aead::Aes128Gcm => &AES_128_GCM,
            Aead::Aes256Gcm => &AES_256_GCM,
            Aead::Chacha20Poly1305 => &CHACHA20_POLY1305,
        }
    }
}

/// The protocol version whose record rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Version {
    Tls12,
    Tls13,
}

/// One direction's keys: the AEAD key, the 12-byte IV (in TLS 1.2 with AES-GCM, the
/// 4-byte salt and 8 bytes that seed the explicit nonces), and the sequence number of
/// the next record. Zeroed when dropped; its `Debug` shows no secret.
#[derive(Serialize, Deserialize)]
pub(crate) struct Keys {
    pub aead: Aead,
    pub version: Version,
    pub key: Zeroizing<Vec<u8>>,
    pub iv: Zeroizing<[u8; 12]>,
    pub seq: u64,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("aead", &self.aead)
            .field("version", &self.version)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// Why a record could not be protected or unprotected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("the key is {got} bytes; {aead:?} takes {wants}")]
    KeyLength {
        aead: Aead,
        got: usize,
        wants: usize,
    },
    #[error("a record of {0} bytes of plaintext; at most 16384")]
    TooLong(usize),
    #[error("a record's payload of {0} bytes is not one a peer may send")]
    BadLength(usize),
    #[error("a record of type {0} where application data (23) was due")]
    WrongType(u8),
    #[error("a record did not authenticate")]
    Forged,
    #[error("a record holds no content type")]
    NoType,
    #[error("the sequence numbers are spent")]
    Exhausted,
}

/// The AEAD key of `keys`, for ring.
fn ring_key(keys: &Keys) -> Result<LessSafeKey, RecordError> {
    let algorithm = keys.aead.algorithm();
    let unbound = UnboundKey::new(algorithm, &keys.key).map_err(|_| RecordError::KeyLength {
        aead: keys.aead,
        got: keys.key.len(),
        wants: algorithm.key_len(),
    })?;
    Ok(LessSafeKey::new(unbound))
}

/// The IV with the sequence number XORed into its last 8 bytes (RFC 8446 section
/// 5.3; RFC 7905 section 2; the explicit part of RFC 5288's GCM nonce as rustls and
/// others make it).
fn xor_nonce(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut nonce = *iv;
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    nonce
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn tls12_aad(seq: u64, content_type: u8, len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&[3, 3]);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// Whether TLS 1.2 records of `aead` carry an explicit nonce (AES-GCM's 8 bytes).
fn explicit_nonce(version: Version, aead: Aead) -> bool {
    version == Version::Tls12 && aead != Aead::Chacha20Poly1305
}

/// One direction's state, as ring takes it: the key, the IV, the sequence number of
/// the next record.
struct Direction {
    key: LessSafeKey,
    /// The key as it came, to hand on with the session.
    raw: Zeroizing<Vec<u8>>,
    iv: Zeroizing<[u8; 12]>,
    aead: Aead,
    version: Version,
    seq: u64,
}

impl fmt::Debug for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Direction")
            .field("aead", &self.aead)
            .field("version", &self.version)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Direction {
    fn new(keys: Keys) -> Result<Direction, RecordError> {
        Ok(Direction {
            key: ring_key(&keys)?,
            raw: keys.key,
            iv: keys.iv,
            aead: keys.aead,
            version: keys.version,
            seq: keys.seq,
        })
    }

    /// The keys as they are now, the sequence number of the next record with them.
    fn keys(&self) -> Keys {
        Keys {
            aead: self.aead,
            version: self.version,
            key: self.raw.clone(),
            iv: self.iv.clone(),
            seq: self.seq,
        }
    }

    /// The sequence number of this record, and the next one's counted.
    fn next_seq(&mut self) -> Result<u64, RecordError> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(RecordError::Exhausted)?;
        Ok(seq)
    }
}

/// The sending direction: protects records.
#[derive(Debug)]
pub(crate) struct Sealer(Direction);

impl Sealer {
    pub(crate) fn new(keys: Keys) -> Result<Sealer, RecordError> {
        Direction::new(keys).map(Sealer)
    }

    /// Its keys as they are now, to go on elsewhere.
    pub(crate) fn keys(&self) -> Keys {
        self.0.keys()
    }

    /// The sequence number of the next record.
    pub(crate) fn seq(&self) -> u64 {
        self.0.seq
    }

    /// Appends to `out` one record of `content_type` holding `plaintext` (at most
    /// [`MAX_PLAINTEXT`] bytes), protected.
    pub(crate) fn seal(
        &mut self,
        content_type: u8,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(RecordError::TooLong(plaintext.len()));
        }
        let d = &mut self.0;
        let seq = d.next_seq()?;
        let nonce = xor_nonce(&d.iv, seq);
        let tag = d.key.algorithm().tag_len();
        let start = out.len();
        match d.version {
            Version::Tls13 => {
                let len = plaintext.len() + 1 + tag;
                let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
                out.extend_from_slice(&header);
                let mut inner = Vec::with_capacity(plaintext.len() + 1 + tag);
                inner.extend_from_slice(plaintext);
                inner.push(content_type);
                d.key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(header),
                        &mut inner,
                    )
                    .map_err(|_| RecordError::Forged)?;
                out.extend_from_slice(&inner);
            }
            Version::Tls12 => {
                let explicit = explicit_nonce(d.version, d.aead);
                let len = plaintext.len() + tag + if explicit { 8 } else { 0 };
                out.extend_from_slice(&[content_type, 3, 3, (len >> 8) as u8, len as u8]);
                if explicit {
                    out.extend_from_slice(&nonce[4..]);
                }
                let mut body = plaintext.to_vec();
                let aad = tls12_aad(seq, content_type, plaintext.len());
                d.key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut body,
                    )
                    .map_err(|_| RecordError::Forged)?;
                out.extend_from_slice(&body);
            }
        }
        debug_assert!(out.len() - start <= HEADER + MAX_PAYLOAD);
        Ok(())
    }
}

/// The receiving direction: unprotects records.
#[derive(Debug)]
pub(crate) struct Opener(Direction);

impl Opener {
    pub(crate) fn new(keys: Keys) -> Result<Opener, RecordError> {
        Direction::new(keys).map(Opener)
    }

    /// Its keys as they are now, to go on elsewhere.
    pub(crate) fn keys(&self) -> Keys {
        self.0.keys()
    }

    /// The sequence number of the next record.
    pub(crate) fn seq(&self) -> u64 {
        self.0.seq
    }

    /// Unprotects one whole record (`header` and its `payload`, which is decrypted in
    /// place): its content type and the plaintext, a part of `payload`.
    pub(crate) fn open<'p>(
        &mut self,
        header: [u8; HEADER],
        payload: &'p mut [u8],
    ) -> Result<(u8, &'p [u8]), RecordError> {
        let d = &mut self.0;
        let tag = d.key.algorithm().tag_len();
        let explicit = explicit_nonce(d.version, d.aead);
        let least = tag + if explicit { 8 } else { 0 } + usize::from(d.version == Version::Tls13);
        if payload.len() < least || payload.len() > MAX_PAYLOAD {
            return Err(RecordError::BadLength(payload.len()));
        }
        let seq = d.seq;
        match d.version {
            Version::Tls13 => {
                if header[0] != APPLICATION_DATA {
                    return Err(RecordError::WrongType(header[0]));
                }
                let nonce = xor_nonce(&d.iv, seq);
                let inner = d
                    .key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(header),
                        payload,
                    )
                    .map_err(|_| RecordError::Forged)?;
                // The content type is the last byte that is not padding.
                let end = inner
                    .iter()
                    .rposition(|b| *b != 0)
                    .ok_or(RecordError::NoType)?;
                d.next_seq()?;
                let content_type = inner[end];
                Ok((content_type, &inner[..end]))
            }
            Version::Tls12 => {
                let content_type = header[0];
                let (nonce, body) = if explicit {
                    let (explicit, body) = payload.split_at_mut(8);
                    let mut nonce = [0u8; 12];
                    nonce[..4].copy_from_slice(&d.iv[..4]);
                    nonce[4..].copy_from_slice(explicit);
                    (nonce, body)
                } else {
                    (xor_nonce(&d.iv, seq), payload)
                };
                let aad = tls12_aad(seq, content_type, body.len() - tag);
                let plain = d
                    .key
                    .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
                    .map_err(|_| RecordError::Forged)?;
                d.next_seq()?;
                Ok((content_type, plain))
            }
        }
    }
}

/// One direction's keys from what rustls extracted (`seq`, `secrets`), for `version`;
/// `None` for a suite this layer does not continue.
pub(crate) fn keys_of(
    version: Version,
    (seq, secrets): (u64, tokio_rustls::rustls::ConnectionTrafficSecrets),
) -> Option<Keys> {
    use tokio_rustls::rustls::ConnectionTrafficSecrets as Secrets;
    let (aead, key, iv) = match &secrets {
        Secrets::Aes128Gcm { key, iv } => (Aead::Aes128Gcm, key, iv),
        Secrets::Aes256Gcm { key, iv } => (Aead::Aes256Gcm, key, iv),
        Secrets::Chacha20Poly1305 { key, iv } => (Aead::Chacha20Poly1305, key, iv),
        _ => return None,
    };
    let iv: [u8; 12] = iv.as_ref().try_into().ok()?;
    Some(Keys {
        aead,
        version,
        key: Zeroizing::new(key.as_ref().to_vec()),
        iv: Zeroizing::new(iv),
        seq,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use tokio_rustls::rustls::crypto::ring::{cipher_suite, default_provider};
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{
        ClientConfig, ClientConnection, ConnectionCommon, RootCertStore, ServerConfig,
        ServerConnection, SupportedCipherSuite, SupportedProtocolVersion, version,
    };

    use super::*;

    /// A server's config (secrets extractable) and a client's that trusts it, of one
    /// suite and version.
    pub(crate) fn configs(
        suite: SupportedCipherSuite,
        tls: &'static SupportedProtocolVersion,
    ) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("a certificate");
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::CryptoProvider {
            cipher_suites: vec![suite],
            ..default_provider()
        });
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[tls])
            .expect("the version")
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .expect("the server's config");
        server.enable_secret_extraction = true;
        let mut roots = RootCertStore::empty();
        roots.add(der).expect("a root");
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[tls])
            .expect("the version")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A client connected over `io` that said `ping` and read the server's `pong`.
    pub(crate) async fn client_after_ping<IO>(
        config: Arc<ClientConfig>,
        io: IO,
    ) -> tokio_rustls::client::TlsStream<IO>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut client = tokio_rustls::TlsConnector::from(config)
            .connect("localhost".try_into().unwrap(), io)
            .await
            .unwrap();
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"pong");
        client
    }

    /// A server that accepted over `io`, read `ping` and answered `pong`, flushed: a
    /// session between two exchanges, ready to be taken from rustls.
    pub(crate) async fn server_after_ping<IO>(
        config: Arc<ServerConfig>,
        io: IO,
    ) -> tokio_rustls::server::TlsStream<IO>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(io)
            .await
            .unwrap();
        let mut ping = [0u8; 4];
        tls.read_exact(&mut ping).await.unwrap();
        tls.write_all(b"pong").await.unwrap();
        tls.flush().await.unwrap();
        tls
    }

    /// A client and a server of one suite and version, handshaken in memory, and the
    /// server's keys once it is quiet.
    /// A client and a server of these configs, their handshake done, nothing left to
    /// write.
    pub(crate) fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (ClientConnection, ServerConnection) {
        let mut client =
            ClientConnection::new(client, "localhost".try_into().unwrap()).expect("a client");
        let mut server = ServerConnection::new(server).expect("a server");
        while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
            pass(&mut client, &mut server);
        }
        (client, server)
    }

    pub(crate) fn session(
        suite: SupportedCipherSuite,
        tls: &'static SupportedProtocolVersion,
    ) -> (ClientConnection, Keys, Keys) {
        let (server, client) = configs(suite, tls);
        let (mut client, mut server) = handshake(server, client);
        // A first exchange through rustls on both sides, so that the keys continue
        // from sequence numbers that are not 0.
        client.writer().write_all(b"first").unwrap();
        pass(&mut client, &mut server);
        let mut got = [0u8; 5];
        server.reader().read_exact(&mut got).unwrap();
        server.writer().write_all(b"first back").unwrap();
        pass(&mut client, &mut server);
        let mut back = [0u8; 10];
        client.reader().read_exact(&mut back).unwrap();
        let version = if tls.version == version::TLS13.version {
            Version::Tls13
        } else {
            Version::Tls12
        };
        let secrets = server.dangerous_extract_secrets().expect("the secrets");
        let tx = keys_of(version, secrets.tx).expect("a suite it continues");
        let rx = keys_of(version, secrets.rx).expect("a suite it continues");
        (client, tx, rx)
    }

    /// Moves what each side has to send to the other.
    fn pass(client: &mut ClientConnection, server: &mut ServerConnection) {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        feed(&mut **server, &wire);
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        feed(&mut **client, &wire);
    }

    /// Gives `conn` the bytes `wire` from its peer.
    fn feed<D>(conn: &mut ConnectionCommon<D>, mut wire: &[u8]) {
        while !wire.is_empty() {
            conn.read_tls(&mut wire).unwrap();
            conn.process_new_packets().unwrap();
        }
    }

    /// The records in `wire`: headers and payloads.
    fn records(mut wire: &[u8]) -> Vec<([u8; HEADER], Vec<u8>)> {
        let mut records = Vec::new();
        while wire.len() >= HEADER {
            let header: [u8; HEADER] = wire[..HEADER].try_into().unwrap();
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            records.push((header, wire[HEADER..HEADER + len].to_vec()));
            wire = &wire[HEADER + len..];
        }
        assert!(wire.is_empty(), "a record cut short");
        records
    }

    /// The suites the record layer continues, with their protocol versions.
    pub(crate) fn suites() -> Vec<(SupportedCipherSuite, &'static SupportedProtocolVersion)> {
        vec![
            (cipher_suite::TLS13_AES_128_GCM_SHA256, &version::TLS13),
            (cipher_suite::TLS13_AES_256_GCM_SHA384, &version::TLS13),
            (
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                &version::TLS13,
            ),
            (
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                &version::TLS12,
            ),
            (
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                &version::TLS12,
            ),
            (
                cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                &version::TLS12,
            ),
        ]
    }

    #[test]
    fn a_session_rustls_began_goes_on_both_ways_in_every_suite() {
        for (suite, tls) in suites() {
            let name = format!("{:?}", suite.suite());
            let (mut client, tx, rx) = session(suite, tls);
            let (mut sealer, mut opener) = (Sealer::new(tx).unwrap(), Opener::new(rx).unwrap());
            assert!(opener.seq() > 0 && sealer.seq() > 0, "{name}: keys in use");
            for round in 0..3u8 {
                // The client's records, opened here.
                let sent = vec![b'a' + round; 3000 + usize::from(round) * 7000];
                client.writer().write_all(&sent).unwrap();
                let mut wire = Vec::new();
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
                let mut got = Vec::new();
                for (header, mut payload) in records(&wire) {
                    let (kind, plain) = opener
                        .open(header, &mut payload)
                        .unwrap_or_else(|e| panic!("{name}: round {round}: {e}"));
                    assert_eq!(kind, APPLICATION_DATA, "{name}");
                    got.extend_from_slice(plain);
                }
                assert_eq!(got, sent, "{name}: round {round}");
                // Records sealed here, read by the client.
                let answer = vec![b'z' - round; 20_000];
                let mut out = Vec::new();
                for chunk in answer.chunks(MAX_PLAINTEXT) {
                    sealer.seal(APPLICATION_DATA, chunk, &mut out).unwrap();
                }
                feed(&mut client, &out);
                let mut read = vec![0u8; answer.len()];
                client.reader().read_exact(&mut read).unwrap();
                assert_eq!(read, answer, "{name}: round {round}");
            }
        }
    }

    #[test]
    fn a_key_update_from_the_client_is_seen_as_a_handshake_message() {
        let (mut client, _, rx) = session(cipher_suite::TLS13_AES_128_GCM_SHA256, &version::TLS13);
        let mut opener = Opener::new(rx).unwrap();
        client.refresh_traffic_keys().expect("a key update");
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let (header, mut payload) = records(&wire).remove(0);
        let (kind, message) = opener.open(header, &mut payload).unwrap();
        // `handshake`, `key_update` (24).
        assert_eq!((kind, message[0]), (HANDSHAKE, 24));
    }

    #[test]
    fn a_record_changed_on_the_way_or_replayed_does_not_authenticate() {
        for (suite, tls) in suites() {
            let (mut client, _, rx) = session(suite, tls);
            let mut opener = Opener::new(rx).unwrap();
            client.writer().write_all(b"hello").unwrap();
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            let (header, payload) = records(&wire).remove(0);
            let mut changed = payload.clone();
            let last = changed.len() - 1;
            changed[last] ^= 1;
            assert_eq!(opener.open(header, &mut changed), Err(RecordError::Forged));
            let mut good = payload.clone();
            assert!(opener.open(header, &mut good).is_ok());
            let mut again = payload;
            assert_eq!(opener.open(header, &mut again), Err(RecordError::Forged));
        }
    }

    #[test]
    fn keys_show_no_secret_and_bad_input_is_refused() {
        let keys = Keys {
            aead: Aead::Aes128Gcm,
            version: Version::Tls13,
            key: Zeroizing::new(vec![0xab; 16]),
            iv: Zeroizing::new([0xcd; 12]),
            seq: 7,
        };
        let shown = format!("{keys:?}");
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
        let mut sealer = Sealer::new(keys).unwrap();
        assert!(!format!("{sealer:?}").contains("171"));
        let mut out = Vec::new();
        assert_eq!(
            sealer.seal(APPLICATION_DATA, &vec![0; MAX_PLAINTEXT + 1], &mut out),
            Err(RecordError::TooLong(MAX_PLAINTEXT + 1))
        );
        let short = Keys {
            aead: Aead::Aes256Gcm,
            version: Version::Tls13,
            key: Zeroizing::new(vec![1; 16]),
            iv: Zeroizing::new([0; 12]),
            seq: 0,
        };
        assert_eq!(
            Opener::new(short).err(),
            Some(RecordError::KeyLength {
                aead: Aead::Aes256Gcm,
                got: 16,
                wants: 32
            })
        );
        let mut opener = Opener::new(Keys {
            aead: Aead::Chacha20Poly1305,
            version: Version::Tls13,
            key: Zeroizing::new(vec![1; 32]),
            iv: Zeroizing::new([0; 12]),
            seq: 0,
        })
        .unwrap();
        let mut tiny = [0u8; 4];
        assert_eq!(
            opener.open([23, 3, 3, 0, 4], &mut tiny),
            Err(RecordError::BadLength(4))
        );
        let mut alert = [0u8; 40];
        assert_eq!(
            opener.open([ALERT, 3, 3, 0, 40], &mut alert),
            Err(RecordError::WrongType(ALERT))
        );
    }
}
