//! TLS for [`Server`](super::Server), through tokio-rustls with ring as the crypto
//! provider.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::tls_session::Info;

/// A TLS configuration for [`Server::tls`](super::Server::tls): the certificate chain,
/// its private key, and ALPN `h2` and `http/1.1`, so that clients pick HTTP/2 or
/// HTTP/1.1 during the handshake.
///
/// Load it before [`Context::ready`](crate::Context::ready) (and before
/// [`Server::serve`](super::Server::serve), which says ready), and return the error from
/// `main`: then a reload to a missing or broken certificate fails before the new process
/// is ready, the old one keeps serving, and the reload command prints the reason.
///
/// ```no_run
/// # fn main() -> Result<(), littleboss::http::TlsError> {
/// let tls = littleboss::http::Tls::from_pem_files("/etc/myblog/cert.pem", "/etc/myblog/key.pem")?;
/// # let _ = tls; Ok(()) }
/// ```
///
/// The crypto provider is ring (rustls's default, aws-lc-rs, takes longer to build and
/// needs cmake); [`Tls::from_config`] takes any `rustls::ServerConfig`, built with any
/// provider.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("alpn", &self.acceptor.config().alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads a certificate chain (PEM, the server's certificate first) and its private
    /// key (PEM: PKCS#8, PKCS#1 or SEC1) from two files.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Tls, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let cert_pem = read("certificate chain", cert)?;
        let key_pem = read("private key", key)?;
        Tls::build(&cert_pem, cert, &key_pem, key)
    }

    /// [`from_pem_files`](Self::from_pem_files) with the PEM text itself.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Tls, TlsError> {
        Tls::build(cert, Path::new("(PEM text)"), key, Path::new("(PEM text)"))
    }

    /// A configuration of the program's own (client certificates, another provider, a
    /// certificate resolver...). Set its `alpn_protocols` to `h2` and `http/1.1` for
    /// HTTP/2 over TLS.
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> Tls {
        Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
        }
    }

    /// The acceptor, its config able to give its sessions' keys so that a session can
    /// move to the next process (`enable_secret_extraction`, on a copy of the
    /// program's config).
    pub(crate) fn movable(&self) -> tokio_rustls::TlsAcceptor {
        let mut config = rustls::ServerConfig::clone(self.acceptor.config());
        config.enable_secret_extraction = true;
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    fn build(cert_pem: &[u8], cert: &Path, key_pem: &[u8], key: &Path) -> Result<Tls, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                what: "certificate chain",
                path: cert.to_path_buf(),
                source,
            })?;
        if chain.is_empty() {
            return Err(TlsError::Pem {
                what: "certificate chain",
                path: cert.to_path_buf(),
                source: pem::Error::NoItemsFound,
            });
        }
        let private_key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Pem {
                what: "private key",
                path: key.to_path_buf(),
                source,
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                builder
                    .with_no_client_auth()
                    .with_single_cert(chain, private_key)
            })
            .map_err(|source| TlsError::Config {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls::from_config(Arc::new(config)))
    }
}

/// What the TLS handshake of a request's connection said, in every request's extensions
/// on a TLS listener: the server name the client asked for (SNI), the ALPN protocol
/// agreed on, and the client's certificate chain (with client authentication). A
/// connection that moved to a new process at a reload keeps it: the new process's
/// service sees what the handshake said, though the handshake was the old process's.
///
/// ```no_run
/// # use hyper::{Request, body::Incoming};
/// # fn f(request: Request<Incoming>) {
/// if let Some(tls) = request.extensions().get::<littleboss::http::TlsInfo>() {
///     println!("asked for {:?}", tls.server_name());
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TlsInfo(Arc<TlsInfoInner>);

#[derive(Debug)]
struct TlsInfoInner {
    server_name: Option<String>,
    alpn: Option<Vec<u8>>,
    certificates: Vec<CertificateDer<'static>>,
}

impl TlsInfo {
    /// The server name the client asked for (SNI), if it asked for one.
    pub fn server_name(&self) -> Option<&str> {
        self.0.server_name.as_deref()
    }

    /// The ALPN protocol agreed on (`http/1.1`, `h2`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.0.alpn.as_deref()
    }

    /// The client's certificate chain, its own first: empty without client
    /// authentication.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.0.certificates
    }

    /// What rustls says of `conn`'s handshake.
    pub(crate) fn of(conn: &rustls::ServerConnection) -> TlsInfo {
        let certificates = conn.peer_certificates().unwrap_or_default();
        TlsInfo(Arc::new(TlsInfoInner {
            server_name: conn.server_name().map(str::to_string),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            certificates: certificates
                .iter()
                .map(|c| c.clone().into_owned())
                .collect(),
        }))
    }

    /// What a moved session carried of its handshake.
    pub(crate) fn from_moved(info: &Info) -> TlsInfo {
        TlsInfo(Arc::new(TlsInfoInner {
            server_name: info.server_name.clone(),
            alpn: info.alpn.clone(),
            certificates: (info.peer_certificates.iter())
                .map(|der| CertificateDer::from(der.clone()))
                .collect(),
        }))
    }
}

/// Why a [`Tls`] could not be made.
///
/// Its `Debug` is its message and its cause, as `Display` shows them: it is what a
/// `main` that returns it prints, and what the `reload` command shows when the new
/// process fails to start.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{what} {}: {source}", .path.display())]
    Read {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What reading it said.
        #[source]
        source: io::Error,
    },
    /// A file is not PEM, or holds no certificate or no key.
    #[error("{what} {}: {}", .path.display(), pem_message(.source))]
    Pem {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        #[source]
        source: pem::Error,
    },
    /// rustls refused the certificate and key (they do not match, an unsupported key...).
    #[error("certificate {} and key {}: {source}", .cert.display(), .key.display())]
    Config {
        /// The certificate chain's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

fn pem_message(e: &pem::Error) -> String {
    match e {
        pem::Error::NoItemsFound => {
            "no PEM item of the expected kind in it (is it PEM?)".to_string()
        }
        other => format!("not valid PEM: {other}"),
    }
}

impl fmt::Debug for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = Tls::from_pem_files(&missing, &missing).unwrap_err();
        let text = format!("{e:?}");
        assert!(text.starts_with("certificate chain "), "{text}");
        assert!(text.contains("missing.pem: No such file"), "{text}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let e = Tls::from_pem_files(&garbage, &garbage).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("garbage.pem: no PEM item"), "{text}");
    }
}
