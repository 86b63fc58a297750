//! Binding the declared listeners, once, in the supervisor (or in a bypassed program).

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};

use crate::spec::{ListenerSpec, Network, SpecError};

/// A bound socket and the address the kernel gave it (so `:0` shows its port).
#[derive(Debug)]
pub(crate) struct Bound {
    pub fd: OwnedFd,
    pub addr: SocketAddr,
}

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BindError {
    #[error("listener {name}: {source}")]
    Spec {
        name: String,
        #[source]
        source: SpecError,
    },
    #[error("bind {name} on {addr}: {reason}")]
    Bind {
        name: String,
        addr: String,
        reason: String,
    },
}

/// Binds `spec` for listener `name`: `None` if the spec has no address (off).
///
/// TCP sockets get `SO_REUSEADDR` (a quick restart must not fail on connections in
/// TIME_WAIT) and the system's largest backlog. UDP sockets do not, since on Linux it
/// would let a second process bind the same port. A wildcard address of `tcp`/`udp`
/// listens on IPv6 and IPv4; on a host without IPv6 it falls back to IPv4.
pub(crate) fn bind(name: &str, spec: &ListenerSpec) -> Result<Option<Bound>, BindError> {
    let Some(shown) = spec.address.clone() else {
        return Ok(None);
    };
    let addrs = spec.resolve().map_err(|source| BindError::Spec {
        name: name.to_string(),
        source,
    })?;
    let mut last = None;
    for addr in addrs
        .iter()
        .copied()
        .chain(ipv4_fallback(spec.network, &addrs))
    {
        match bind_one(spec.network, addr) {
            Ok(bound) => return Ok(Some(bound)),
            Err(e) => last = Some(e),
        }
    }
    let reason = last.map_or_else(|| "no address".to_string(), |e| describe(&e));
    Err(BindError::Bind {
        name: name.to_string(),
        addr: shown,
        reason,
    })
}

/// For a dual-stack wildcard (`[::]`), the IPv4 wildcard to try if IPv6 is missing.
fn ipv4_fallback(network: Network, addrs: &[SocketAddr]) -> Option<SocketAddr> {
    let first = addrs.first()?;
    let dual = matches!(network, Network::Tcp | Network::Udp);
    (dual && first.ip().is_unspecified() && first.is_ipv6())
        .then(|| SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), first.port()))
}

fn bind_one(network: Network, addr: SocketAddr) -> io::Result<Bound> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let kind = if network.is_tcp() {
        SocketType::STREAM
    } else {
        SocketType::DGRAM
    };
    let fd = rustix::net::socket_with(family, kind, SocketFlags::CLOEXEC, None)?;
    if addr.is_ipv6() {
        let v6only = matches!(network, Network::Tcp6 | Network::Udp6);
        sockopt::set_ipv6_v6only(&fd, v6only)?;
    }
    if network.is_tcp() {
        sockopt::set_socket_reuseaddr(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    if network.is_tcp() {
        rustix::net::listen(&fd, max_backlog())?;
    }
    let addr = SocketAddr::try_from(rustix::net::getsockname(&fd)?)
        .map_err(|_| io::Error::other("bound socket has no IP address"))?;
    Ok(Bound { fd, addr })
}

/// The system's largest accept backlog (`net.core.somaxconn`), as Go uses.
fn max_backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// `address in use`, `permission denied`: the short form of an OS error.
pub(crate) fn describe(e: &io::Error) -> String {
    let kind = e.kind().to_string();
    if e.kind() == io::ErrorKind::Other || kind.contains("uncategorized") {
        e.to_string()
    } else {
        kind
    }
}

/// `tcp:127.0.0.1:41234`: a bound listener as `status` shows it.
pub(crate) fn shown(network: Network, addr: &SocketAddr) -> String {
    format!("{network}:{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_port_zero_and_reports_busy_ports() {
        let spec = ListenerSpec::parse("tcp:127.0.0.1:0").unwrap();
        let bound = bind("http", &spec).unwrap().unwrap();
        assert_ne!(bound.addr.port(), 0);
        let busy = ListenerSpec::parse(&format!("tcp:{}", bound.addr)).unwrap();
        let err = bind("http", &busy).unwrap_err().to_string();
        assert_eq!(err, format!("bind http on {}: address in use", bound.addr));
        let udp = ListenerSpec::parse("udp4::0").unwrap();
        assert!(bind("dns", &udp).unwrap().unwrap().addr.is_ipv4());
        assert!(
            bind("off", &ListenerSpec::parse("tcp:").unwrap())
                .unwrap()
                .is_none()
        );
    }
}
