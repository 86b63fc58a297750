//! Binding the declared listeners, once, in the supervisor (or in a bypassed program).

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use rustix::fs::FileType;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType, sockopt};

use crate::error::Error;
use crate::spec::{Kind, ListenerSpec, Network};
use crate::sys;

use super::{Bound, BoundAddr, SocketFile, activation, describe};

/// Binds `spec` for listener `name`: `None` if the spec has no address (off).
///
/// TCP sockets get `SO_REUSEADDR` (a quick restart must not fail on connections in
/// TIME_WAIT) and the system's largest backlog. UDP sockets do not, since on Linux it
/// would let a second process bind the same port. A wildcard address of `tcp`/`udp`
/// listens on IPv6 and IPv4; on a host without IPv6 it falls back to IPv4. A unix
/// socket replaces a stale socket file that nobody answers on, never a live one, and
/// gets `unix_mode` if given.
pub(crate) fn bind(
    name: &str,
    spec: &ListenerSpec,
    unix_mode: Option<u32>,
) -> Result<Option<Bound>, Error> {
    let Some(shown) = spec.address.clone() else {
        return Ok(None);
    };
    let fail = |kind: io::ErrorKind, reason: String| Error::Bind {
        listener: name.to_string(),
        address: shown.clone(),
        source: io::Error::new(kind, reason),
    };
    if spec.network == Network::Unix {
        return bind_unix(&shown, unix_mode).map(Some).map_err(|why| {
            fail(
                io::ErrorKind::Other,
                format!("{why}{}", bind_hint(name, None)),
            )
        });
    }
    let addrs = crate::spec::resolve(spec)
        .map_err(|source| Error::config(format!("listener {name}: {source}")))?;
    let mut last = None;
    for addr in addrs
        .iter()
        .copied()
        .chain(ipv4_fallback(spec.network, &addrs))
    {
        match bind_ip(spec.network, addr) {
            Ok(bound) => return Ok(Some(bound)),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        None => fail(io::ErrorKind::AddrNotAvailable, "no address".to_string()),
        Some((addr, e)) => fail(
            e.kind(),
            format!("{}{}", describe(&e), bind_hint(name, Some((addr, &e)))),
        ),
    })
}

/// What to do about a failed bind (of an IP address, with its error): where the port
/// is privileged, how to get it; in any case, how to bind another address instead.
fn bind_hint(name: &str, failed: Option<(SocketAddr, &io::Error)>) -> String {
    let privileged = failed
        .filter(|(addr, e)| e.kind() == io::ErrorKind::PermissionDenied && addr.port() < 1024);
    let privileged = if let Some((addr, _)) = privileged {
        format!(
            "; port {} is below 1024, which only root (or CAP_NET_BIND_SERVICE) may bind: start the supervisor as root, with user = \"...\" so that its children run as that user",
            addr.port()
        )
    } else {
        String::new()
    };
    format!("{privileged}; to bind another address, pass --{name}=ADDR")
}

/// For a dual-stack wildcard (`[::]`), the IPv4 wildcard to try if IPv6 is missing.
fn ipv4_fallback(network: Network, addrs: &[SocketAddr]) -> Option<SocketAddr> {
    let first = addrs.first()?;
    let dual = matches!(network, Network::Tcp | Network::Udp);
    (dual && first.ip().is_unspecified() && first.is_ipv6())
        .then(|| SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), first.port()))
}

fn bind_ip(network: Network, addr: SocketAddr) -> io::Result<Bound> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let tcp = network.kind() == Kind::Tcp;
    let (kind, _) = super::socket_kind(network)
        .ok_or_else(|| io::Error::other(format!("no socket type for {network}")))?;
    let fd = sys::socket(family, kind)?;
    if addr.is_ipv6() {
        let v6only = matches!(network, Network::Tcp6 | Network::Udp6);
        sockopt::set_ipv6_v6only(&fd, v6only)?;
    }
    if tcp {
        sockopt::set_socket_reuseaddr(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    if tcp {
        rustix::net::listen(&fd, max_backlog())?;
    }
    let addr = SocketAddr::try_from(rustix::net::getsockname(&fd)?)
        .map_err(|_| io::Error::other("bound socket has no IP address"))?;
    Ok(Bound {
        fd,
        addr: BoundAddr::Ip(addr),
        file: None,
    })
}

fn bind_unix(address: &str, mode: Option<u32>) -> Result<Bound, UnixBindError> {
    let addr = match address.strip_prefix('@') {
        Some(name) => sys::abstract_address(name)?,
        None => {
            remove_stale(Path::new(address))?;
            SocketAddrUnix::new(address).map_err(|e| UnixBindError::Address(e.into()))?
        }
    };
    let os = |e: rustix::io::Errno| UnixBindError::Bind(e.into());
    let fd = sys::socket(AddressFamily::UNIX, SocketType::STREAM).map_err(UnixBindError::Bind)?;
    rustix::net::bind(&fd, &addr).map_err(os)?;
    if let (Some(mode), false) = (mode, address.starts_with('@')) {
        rustix::fs::chmod(address, sys::mode(mode)).map_err(|e| UnixBindError::Chmod {
            mode,
            source: e.into(),
        })?;
    }
    rustix::net::listen(&fd, max_backlog()).map_err(os)?;
    let file = match address.starts_with('@') {
        true => None,
        false => Some(SocketFile::of(Path::new(address)).map_err(UnixBindError::Bind)?),
    };
    Ok(Bound {
        fd,
        addr: BoundAddr::Unix(address.to_string()),
        file,
    })
}

/// Why a unix listener could not be bound, as the reason alone ([`bind`] adds the
/// listener's name and what to do): the step that failed, with the system's answer
/// in short.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnixBindError {
    /// `@name`, where the system has no such name.
    #[error(transparent)]
    Abstract(#[from] sys::AbstractError),
    /// The path is not one a unix address can hold.
    #[error("{}", describe(.0))]
    Address(#[source] io::Error),
    /// Making, binding or listening on the socket failed.
    #[error("{}", describe(.0))]
    Bind(#[source] io::Error),
    /// The socket file could not be given its mode.
    #[error("chmod {mode:o}: {}", describe(.source))]
    Chmod {
        mode: u32,
        #[source]
        source: io::Error,
    },
    /// What is at the path could not be looked at, or asked whether it is live.
    #[error("{}", describe(.0))]
    Stale(#[source] io::Error),
    /// Something other than a socket is at the path.
    #[error("the path exists and is not a socket")]
    NotSocket,
    /// A live process holds the socket at the path.
    #[error("a live process answers on that socket")]
    Live,
    /// The stale socket file could not be removed.
    #[error("cannot remove the stale socket: {}", describe(.0))]
    Remove(#[source] io::Error),
}

/// One declared listener, opened: adopted from systemd, bound, or off (`None`).
pub(crate) type OpenedListener = (String, Network, Option<Bound>);

/// Opens every declared listener: a socket systemd passed under its name if there is
/// one, else a new one bound to its spec. Returns the listeners, and the names of
/// passed sockets that no listener declares (closed).
pub(crate) fn open_all(
    specs: &[(String, ListenerSpec)],
    unix_mode: Option<u32>,
    mut activated: activation::Activated,
) -> Result<(Vec<OpenedListener>, Vec<String>), Error> {
    let mut opened = Vec::with_capacity(specs.len());
    for (name, spec) in specs {
        let bound = match activated.adopt(name, spec.network) {
            Some(adopted) => {
                Some(adopted.map_err(|e| Error::config(format!("listener {name}: {e}")))?)
            }
            None => bind(name, spec, unix_mode)?,
        };
        opened.push((name.clone(), spec.network, bound));
    }
    Ok((opened, activated.unused()))
}

/// Removes a socket file that a dead process left; refuses a live one, and anything
/// that is not a socket.
fn remove_stale(path: &Path) -> Result<(), UnixBindError> {
    let stat = match rustix::fs::lstat(path) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(UnixBindError::Stale(e.into())),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Socket {
        return Err(UnixBindError::NotSocket);
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(UnixBindError::Live),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(UnixBindError::Remove)
        }
        Err(e) => Err(UnixBindError::Stale(e)),
    }
}

/// The system's largest accept backlog (`net.core.somaxconn`), as Go uses.
fn max_backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_port_zero_and_reports_busy_ports() {
        let spec = ListenerSpec::parse("tcp:127.0.0.1:0").unwrap();
        let bound = bind("http", &spec, None).unwrap().unwrap();
        let BoundAddr::Ip(addr) = bound.addr else {
            panic!("not an IP address")
        };
        assert_ne!(addr.port(), 0);
        let busy = ListenerSpec::parse(&format!("tcp:{addr}")).unwrap();
        let err = bind("http", &busy, None).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "bind http on {addr}: address in use; to bind another address, pass --http=ADDR"
            )
        );
        let udp = ListenerSpec::parse("udp4::0").unwrap();
        let udp = bind("dns", &udp, None).unwrap().unwrap();
        assert!(matches!(udp.addr, BoundAddr::Ip(a) if a.is_ipv4()));
        let off = ListenerSpec::parse("tcp:").unwrap();
        assert!(bind("off", &off, None).unwrap().is_none());
    }

    #[test]
    fn a_privileged_port_says_how_to_get_it() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let low: SocketAddr = "0.0.0.0:443".parse().unwrap();
        let hint = bind_hint("https", Some((low, &denied)));
        assert!(hint.contains("port 443 is below 1024"), "{hint}");
        assert!(hint.contains("user = \"...\""), "{hint}");
        assert!(
            hint.ends_with("; to bind another address, pass --https=ADDR"),
            "{hint}"
        );
        let high: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        assert_eq!(
            bind_hint("https", Some((high, &denied))),
            "; to bind another address, pass --https=ADDR"
        );
        let busy = io::Error::from(io::ErrorKind::AddrInUse);
        assert!(!bind_hint("https", Some((low, &busy))).contains("root"));
    }

    #[test]
    fn unix_sockets_replace_stale_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let spec = ListenerSpec::parse(&format!("unix:{}", path.display())).unwrap();
        let live = bind("api", &spec, Some(0o600)).unwrap().unwrap();
        let mode = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let err = bind("api", &spec, None).unwrap_err().to_string();
        assert!(err.contains("a live process answers"), "{err}");
        drop(live);
        // The file is left behind by a "dead" process: it is replaced.
        assert!(path.exists());
        bind("api", &spec, None).unwrap().unwrap();
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        let plain =
            ListenerSpec::parse(&format!("unix:{}", dir.path().join("plain").display())).unwrap();
        let err = bind("api", &plain, None).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        let abstract_spec =
            ListenerSpec::parse(&format!("unix:@littleboss-test-{}", std::process::id())).unwrap();
        bind("api", &abstract_spec, None).unwrap().unwrap();
    }

    #[test]
    fn unix_refusals_read_as_before() {
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        let cases = [
            (UnixBindError::Bind(denied()), "permission denied"),
            (
                UnixBindError::Chmod {
                    mode: 0o660,
                    source: denied(),
                },
                "chmod 660: permission denied",
            ),
            (
                UnixBindError::Remove(denied()),
                "cannot remove the stale socket: permission denied",
            ),
            (
                UnixBindError::NotSocket,
                "the path exists and is not a socket",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
