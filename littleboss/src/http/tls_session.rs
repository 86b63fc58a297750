//! What of a TLS connection moves with it to the next process, besides its socket and
//! the plaintext read from it: its session. Taken from rustls between two requests
//! ([`Session::take`]), or from a session continued here
//! ([`ContinuedTls::into_session`](super::continued_tls::ContinuedTls::into_session)),
//! encoded as a [`Secret`] that the supervisor relays unread, and decoded by the
//! process that takes the connection.
//!
//! The layout is postcard, its first byte [`FORMAT`]: a process reads only the
//! layout it knows, and declines a session of another (the connection goes back and
//! winds down by closing). Its golden bytes are in
//! `littleboss/tests/golden/tls-session.txt`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls::{ProtocolVersion, ServerConnection, SupportedCipherSuite};
use zeroize::Zeroizing;

use super::record_layer::{Keys, Version, keys_of};
use crate::secret::Secret;

/// The version of the session's layout (its first byte), which the channel's protocol
/// names so that a child declines a session of a layout it does not read.
pub(crate) const FORMAT: u8 = crate::control::protocol::TLS_SESSION_LAYOUT;

/// The longest a session lives after its handshake once it has moved: a continued
/// session cannot renew its keys, so it closes gracefully by then.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A TLS session between two records, as it moves.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Session {
    /// [`FORMAT`].
    pub format: u8,
    pub version: Version,
    /// This side's sending keys, and the sequence number of its next record.
    pub tx: Keys,
    /// The receiving keys, and the sequence number of the next record to open.
    pub rx: Keys,
    /// What was read of the next record, not whole yet (ciphertext).
    pub incoming: Vec<u8>,
    /// The suite's confidentiality limit: the most records one key may protect
    /// (`CipherSuiteCommon::confidentiality_limit`).
    pub limit: u64,
    /// When the handshake was done, in milliseconds since the Unix epoch.
    pub handshake_ms: u64,
    /// What the handshake said of the peer.
    pub info: Info,
}

/// What the handshake said of the connection: what the client asked for and showed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Info {
    /// The server name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The ALPN protocol agreed on.
    pub alpn: Option<Vec<u8>>,
    /// The client's certificate chain, DER, its own first (none without client
    /// authentication).
    pub peer_certificates: Vec<Vec<u8>>,
}

/// Whether a session of `conn` can be taken: TLS 1.3 or 1.2, with one of the suites of
/// rustls's ring provider (TLS 1.3 with AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305;
/// TLS 1.2 with ECDHE and those), nothing queued to write. A session of another
/// provider's suite is not taken: its program chose not to have ring protect its
/// records (the suite is told apart from ring's own by identity, not by name).
pub(crate) fn can_take(conn: &ServerConnection) -> bool {
    let version = matches!(
        conn.protocol_version(),
        Some(ProtocolVersion::TLSv1_3 | ProtocolVersion::TLSv1_2)
    );
    let suite = conn.negotiated_cipher_suite().is_some_and(|negotiated| {
        tokio_rustls::rustls::crypto::ring::ALL_CIPHER_SUITES
            .iter()
            .any(|ring| same_suite(*ring, negotiated))
    });
    version && suite && !conn.wants_write()
}

/// Whether `a` and `b` are the same suite of the same provider: the same suite, whose
/// hash is the same provider's (the same static; a suite's own address is not one
/// rustls keeps unique).
fn same_suite(a: SupportedCipherSuite, b: SupportedCipherSuite) -> bool {
    let common = |suite| match suite {
        SupportedCipherSuite::Tls13(s) => &s.common,
        SupportedCipherSuite::Tls12(s) => &s.common,
    };
    let (a, b) = (common(a), common(b));
    a.suite == b.suite && std::ptr::addr_eq(a.hash_provider, b.hash_provider)
}

/// The session's confidentiality limit, in records.
fn limit_of(suite: SupportedCipherSuite) -> u64 {
    match suite {
        SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
        SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
    }
}

impl Session {
    /// Takes the session from rustls, between two records: `incoming` is what was read
    /// of the next one (see `whole_records`), `handshake` when the handshake was done.
    /// Also returns the plaintext rustls opened and nobody read yet. Refused: a session
    /// that [`can_take`] refuses, and a server config without
    /// `enable_secret_extraction`.
    pub(crate) fn take(
        mut conn: ServerConnection,
        incoming: Vec<u8>,
        handshake: SystemTime,
    ) -> Result<(Session, Vec<u8>), String> {
        use std::io::Read;
        if !can_take(&conn) {
            return Err("a session of a protocol or suite that does not move".to_string());
        }
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => Version::Tls13,
            _ => Version::Tls12,
        };
        let mut plain = Vec::new();
        match conn.reader().read_to_end(&mut plain) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.to_string()),
        }
        let limit = conn.negotiated_cipher_suite().map_or(0, limit_of);
        let info = Info {
            server_name: conn.server_name().map(str::to_string),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer_certificates: (conn.peer_certificates().unwrap_or_default().iter())
                .map(|c| c.as_ref().to_vec())
                .collect(),
        };
        let secrets = conn
            .dangerous_extract_secrets()
            .map_err(|e| e.to_string())?;
        let unknown = || "a suite the record layer does not continue".to_string();
        let session = Session {
            format: FORMAT,
            version,
            tx: keys_of(version, secrets.tx).ok_or_else(unknown)?,
            rx: keys_of(version, secrets.rx).ok_or_else(unknown)?,
            incoming,
            limit,
            handshake_ms: unix_ms(handshake),
            info,
        };
        Ok((session, plain))
    }

    /// The session as it travels: a secret, in a buffer sized for it once (so that no
    /// copy of its keys is left behind by a buffer that grew).
    pub(crate) fn encode(&self) -> Result<Secret, String> {
        let certificates: usize = self.info.peer_certificates.iter().map(Vec::len).sum();
        let names = self.info.server_name.as_ref().map_or(0, String::len)
            + self.info.alpn.as_ref().map_or(0, Vec::len);
        let bound = 256 + self.incoming.len() + certificates + names;
        let bytes = postcard::to_extend(self, Vec::with_capacity(bound))
            .map_err(|e| format!("the TLS session cannot be encoded: {e}"))?;
        Ok(Secret::new(Zeroizing::new(bytes)))
    }

    /// A session as it travelled; refused if its layout is not [`FORMAT`].
    pub(crate) fn decode(secret: &Secret) -> Result<Session, String> {
        match secret.expose().first() {
            Some(&FORMAT) => postcard::from_bytes(secret.expose())
                .map_err(|e| format!("a TLS session that does not decode: {e}")),
            Some(other) => Err(format!(
                "a TLS session of layout {other}; this build reads layout {FORMAT}"
            )),
            None => Err("an empty TLS session".to_string()),
        }
    }

    /// When it must have ended: [`MAX_AGE`] after its handshake.
    pub(crate) fn ends_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.handshake_ms) + MAX_AGE
    }
}

/// `at` in milliseconds since the Unix epoch (0 before it).
fn unix_ms(at: SystemTime) -> u64 {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::record_layer::Aead;
    use super::*;
    use crate::golden;

    /// A session with made-up keys, as the golden bytes pin it.
    fn sample() -> Session {
        let keys = |byte: u8, seq: u64| Keys {
            aead: Aead::Aes128Gcm,
            version: Version::Tls13,
            key: Zeroizing::new(vec![byte; 16]),
            iv: Zeroizing::new([byte + 1; 12]),
            seq,
        };
        Session {
            format: FORMAT,
            version: Version::Tls13,
            tx: keys(0x10, 3),
            rx: keys(0x20, 2),
            incoming: vec![23, 3, 3, 0, 40, 0xaa],
            limit: 1 << 24,
            handshake_ms: 1_764_950_400_000,
            info: Info {
                server_name: Some("localhost".to_string()),
                alpn: Some(b"http/1.1".to_vec()),
                peer_certificates: vec![vec![0x30, 0x82, 0x01]],
            },
        }
    }

    #[test]
    fn the_session_encodes_as_it_always_has() {
        let bytes = sample().encode().unwrap();
        golden::check(
            "tls-session.txt",
            "A TLS session as it moves with its connection (protocol 7, `TlsParcel`), layout 1:\n\
             postcard, made-up keys.",
            &[("layout 1".to_string(), bytes.expose().to_vec())],
        );
        let golden = golden::read("tls-session.txt");
        let decoded = Session::decode(&Secret::new(Zeroizing::new(golden["layout 1"].clone())));
        let decoded = decoded.unwrap();
        assert_eq!(decoded.tx.key.as_slice(), &[0x10; 16]);
        assert_eq!((decoded.tx.seq, decoded.rx.seq), (3, 2));
        assert_eq!(decoded.info, sample().info);
        assert_eq!(
            decoded.ends_at(),
            UNIX_EPOCH + Duration::from_millis(1_764_950_400_000) + MAX_AGE
        );
    }

    /// Another provider's hash: ring's, under another name.
    struct OtherHash(&'static dyn tokio_rustls::rustls::crypto::hash::Hash);

    impl tokio_rustls::rustls::crypto::hash::Hash for OtherHash {
        fn start(&self) -> Box<dyn tokio_rustls::rustls::crypto::hash::Context> {
            self.0.start()
        }

        fn hash(&self, data: &[u8]) -> tokio_rustls::rustls::crypto::hash::Output {
            self.0.hash(data)
        }

        fn output_len(&self) -> usize {
            self.0.output_len()
        }

        fn algorithm(&self) -> tokio_rustls::rustls::crypto::hash::HashAlgorithm {
            self.0.algorithm()
        }
    }

    /// A session of ring's suites is taken; one of the same suite from another
    /// provider (here a copy of ring's, which is not ring's) is not.
    #[test]
    fn only_sessions_of_the_ring_providers_suites_are_taken() {
        use super::super::record_layer::tests::{configs, handshake, suites};
        use tokio_rustls::rustls::Tls13CipherSuite;
        use tokio_rustls::rustls::crypto::CipherSuiteCommon;
        for (suite, tls) in suites() {
            let (server, client) = configs(suite, tls);
            let (_client, server) = handshake(server, client);
            assert!(can_take(&server), "{:?}", suite.suite());
        }
        let (suite, tls) = suites()[0];
        let SupportedCipherSuite::Tls13(ring) = suite else {
            panic!("a TLS 1.3 suite first");
        };
        let other: &'static Tls13CipherSuite = Box::leak(Box::new(Tls13CipherSuite {
            common: CipherSuiteCommon {
                suite: ring.common.suite,
                hash_provider: Box::leak(Box::new(OtherHash(ring.common.hash_provider))),
                confidentiality_limit: ring.common.confidentiality_limit,
            },
            hkdf_provider: ring.hkdf_provider,
            aead_alg: ring.aead_alg,
            quic: ring.quic,
        }));
        let (server, client) = configs(SupportedCipherSuite::Tls13(other), tls);
        let (_client, server) = handshake(server, client);
        assert!(!can_take(&server));
        let taken = Session::take(server, Vec::new(), SystemTime::now());
        assert!(taken.is_err());
    }

    #[test]
    fn a_session_of_another_layout_is_refused_by_name() {
        let mut bytes = sample().encode().unwrap().expose().to_vec();
        bytes[0] = 2;
        let e = Session::decode(&Secret::new(Zeroizing::new(bytes))).unwrap_err();
        assert_eq!(e, "a TLS session of layout 2; this build reads layout 1");
        let e = Session::decode(&Secret::new(Zeroizing::new(vec![FORMAT, 0xff]))).unwrap_err();
        assert!(e.starts_with("a TLS session that does not decode"), "{e}");
        assert!(
            !format!("{:?}", sample()).contains("16, 16"),
            "no key in Debug"
        );
    }
}
