//! Listener specs: `NETWORK:ADDRESS`, as in `tcp::443` or `udp:127.0.0.1:5353`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

/// The network of a listener: the part of a spec before the first `:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Network {
    /// TCP over IPv6 and IPv4 (a wildcard address listens on both where the host has both).
    Tcp,
    /// TCP over IPv4 only.
    Tcp4,
    /// TCP over IPv6 only.
    Tcp6,
    /// UDP over IPv6 and IPv4.
    Udp,
    /// UDP over IPv4 only.
    Udp4,
    /// UDP over IPv6 only.
    Udp6,
    /// A unix stream socket: a path (`unix:/run/myblog.sock`) or, with `@`, a name in
    /// Linux's abstract namespace (`unix:@myblog`).
    Unix,
}

/// The networks a spec may name, in the order error messages list them.
pub const NETWORKS: &[&str] = &["tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix"];

/// The longest unix socket path (or abstract name) Linux takes, in bytes.
const MAX_UNIX_PATH: usize = 107;

/// What kind of socket a network gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A TCP listener.
    Tcp,
    /// A UDP socket.
    Udp,
    /// A unix stream listener.
    Unix,
}

impl Kind {
    /// `TCP`, `UDP` or `unix`, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "TCP",
            Kind::Udp => "UDP",
            Kind::Unix => "unix",
        }
    }
}

impl Network {
    /// Parses `tcp`, `tcp4`, `tcp6`, `udp`, `udp4` or `udp6`.
    pub fn parse(s: &str) -> Result<Network, SpecError> {
        Ok(match s {
            "tcp" => Network::Tcp,
            "tcp4" => Network::Tcp4,
            "tcp6" => Network::Tcp6,
            "udp" => Network::Udp,
            "udp4" => Network::Udp4,
            "udp6" => Network::Udp6,
            "unix" => Network::Unix,
            _ => return Err(SpecError::UnknownNetwork(s.to_string())),
        })
    }

    /// The name used in specs and in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Tcp => "tcp",
            Network::Tcp4 => "tcp4",
            Network::Tcp6 => "tcp6",
            Network::Udp => "udp",
            Network::Udp4 => "udp4",
            Network::Udp6 => "udp6",
            Network::Unix => "unix",
        }
    }

    /// The kind of socket this network gives.
    pub fn kind(self) -> Kind {
        match self {
            Network::Tcp | Network::Tcp4 | Network::Tcp6 => Kind::Tcp,
            Network::Udp | Network::Udp4 | Network::Udp6 => Kind::Udp,
            Network::Unix => Kind::Unix,
        }
    }

    /// The wildcard address of this network for a spec like `:443`.
    fn wildcard(self) -> IpAddr {
        match self {
            Network::Tcp4 | Network::Udp4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    fn accepts(self, addr: &SocketAddr) -> bool {
        match self {
            Network::Tcp4 | Network::Udp4 => addr.is_ipv4(),
            Network::Tcp6 | Network::Udp6 => addr.is_ipv6(),
            Network::Tcp | Network::Udp => true,
            Network::Unix => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a listener spec or address did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The spec has no `:` between network and address.
    #[error(
        "listener spec {0:?} is not NETWORK:ADDRESS (for example \"tcp::443\" or \"udp:127.0.0.1:5353\")"
    )]
    NoNetwork(String),
    /// The network is not one of [`NETWORKS`].
    #[error("unknown network {0:?}; the networks are tcp, tcp4, tcp6, udp, udp4, udp6 and unix")]
    UnknownNetwork(String),
    /// The address is not `HOST:PORT`, `:PORT` or `[IPV6]:PORT`.
    #[error("address {0:?} is not HOST:PORT, :PORT or [IPV6]:PORT")]
    BadAddress(String),
    /// The port is not a number from 0 to 65535.
    #[error("port {port:?} in address {addr:?} is not a number from 0 to 65535")]
    BadPort {
        /// The whole address.
        addr: String,
        /// The port part.
        port: String,
    },
    /// A unix socket path that Linux cannot take.
    #[error("unix socket path {0:?} must be at most 107 bytes, without NUL")]
    BadPath(String),
    /// The host did not resolve to an address of the network.
    #[error("host in {addr:?} has no {network} address")]
    NoAddress {
        /// The whole address.
        addr: String,
        /// The network it had to be of.
        network: Network,
    },
}

/// A parsed listener spec: a network and an address, or no address (the listener is off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The network.
    pub network: Network,
    /// The address, `None` when the spec's address is empty (the listener is off).
    pub address: Option<String>,
}

impl ListenerSpec {
    /// Parses `NETWORK:ADDRESS`, checking the address's form (not resolving host names).
    ///
    /// ```
    /// use littleboss::spec::{ListenerSpec, Network};
    /// let spec = ListenerSpec::parse("tcp::443").unwrap();
    /// assert_eq!(spec.network, Network::Tcp);
    /// assert_eq!(spec.address.as_deref(), Some(":443"));
    /// assert_eq!(ListenerSpec::parse("udp:").unwrap().address, None);
    /// ```
    pub fn parse(spec: &str) -> Result<ListenerSpec, SpecError> {
        let (network, address) = spec
            .split_once(':')
            .ok_or_else(|| SpecError::NoNetwork(spec.to_string()))?;
        let network = Network::parse(network)?;
        ListenerSpec::with_address(network, address)
    }

    /// A spec of `network` with `address` (as a listener flag gives it); empty means off.
    pub fn with_address(network: Network, address: &str) -> Result<ListenerSpec, SpecError> {
        if address.is_empty() {
            return Ok(ListenerSpec {
                network,
                address: None,
            });
        }
        if network == Network::Unix {
            if address.len() > MAX_UNIX_PATH || address.contains('\0') {
                return Err(SpecError::BadPath(address.to_string()));
            }
        } else {
            split_host_port(address)?;
        }
        Ok(ListenerSpec {
            network,
            address: Some(address.to_string()),
        })
    }

    /// The socket addresses to bind, in order of preference: host names are resolved
    /// here. Empty for a listener that is off, or a unix one.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, SpecError> {
        let Some(address) = self
            .address
            .as_ref()
            .filter(|_| self.network != Network::Unix)
        else {
            return Ok(Vec::new());
        };
        let (host, port) = split_host_port(address)?;
        let candidates: Vec<SocketAddr> = if host.is_empty() {
            vec![SocketAddr::new(self.network.wildcard(), port)]
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            (host, port)
                .to_socket_addrs()
                .map(|addrs| addrs.collect())
                .unwrap_or_default()
        };
        let found: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(|a| self.network.accepts(a))
            .collect();
        if found.is_empty() {
            return Err(SpecError::NoAddress {
                addr: address.clone(),
                network: self.network,
            });
        }
        Ok(found)
    }
}

impl fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.network,
            self.address.as_deref().unwrap_or("")
        )
    }
}

/// Splits `HOST:PORT`, `:PORT` or `[IPV6]:PORT` into its host (without brackets) and port.
fn split_host_port(addr: &str) -> Result<(&str, u16), SpecError> {
    let bad = || SpecError::BadAddress(addr.to_string());
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or_else(bad)?;
        let port = rest.strip_prefix(':').ok_or_else(bad)?;
        host.parse::<Ipv6Addr>().map_err(|_| bad())?;
        (host, port)
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            // An IPv6 address must be in brackets so that its port can be told apart.
            return Err(bad());
        }
        (host, port)
    };
    let port_num = port
        .parse::<u16>()
        .ok()
        .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| SpecError::BadPort {
            addr: addr.to_string(),
            port: port.to_string(),
        })?;
    Ok((host, port_num))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let cases: &[(&str, Network, Option<&str>)] = &[
            ("tcp::443", Network::Tcp, Some(":443")),
            ("tcp4:127.0.0.1:0", Network::Tcp4, Some("127.0.0.1:0")),
            ("tcp6:[::1]:8080", Network::Tcp6, Some("[::1]:8080")),
            ("udp:127.0.0.1:5353", Network::Udp, Some("127.0.0.1:5353")),
            ("udp4::53", Network::Udp4, Some(":53")),
            ("udp6:[::]:53", Network::Udp6, Some("[::]:53")),
            ("tcp:localhost:80", Network::Tcp, Some("localhost:80")),
            ("tcp:", Network::Tcp, None),
            ("unix:/run/x.sock", Network::Unix, Some("/run/x.sock")),
            ("unix:@abstract", Network::Unix, Some("@abstract")),
            ("unix:", Network::Unix, None),
        ];
        for (spec, network, address) in cases {
            let parsed = ListenerSpec::parse(spec).unwrap();
            assert_eq!(parsed.network, *network, "{spec}");
            assert_eq!(parsed.address.as_deref(), *address, "{spec}");
            assert_eq!(parsed.to_string(), *spec);
        }
    }

    #[test]
    fn rejects_bad_specs() {
        let cases: &[(&str, SpecError)] = &[
            ("tcp", SpecError::NoNetwork("tcp".into())),
            ("sctp::1", SpecError::UnknownNetwork("sctp".into())),
            ("tcp:443", SpecError::BadAddress("443".into())),
            ("tcp:::1:80", SpecError::BadAddress("::1:80".into())),
            ("tcp:[::1:80", SpecError::BadAddress("[::1:80".into())),
            (
                "tcp:[nothost]:80",
                SpecError::BadAddress("[nothost]:80".into()),
            ),
            (
                "unix:/very/long/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock",
                SpecError::BadPath("/very/long/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock".into()),
            ),
            (
                "tcp::65536",
                SpecError::BadPort {
                    addr: ":65536".into(),
                    port: "65536".into(),
                },
            ),
            (
                "tcp::+80",
                SpecError::BadPort {
                    addr: ":+80".into(),
                    port: "+80".into(),
                },
            ),
            (
                "udp:1.2.3.4:",
                SpecError::BadPort {
                    addr: "1.2.3.4:".into(),
                    port: "".into(),
                },
            ),
        ];
        for (spec, err) in cases {
            assert_eq!(ListenerSpec::parse(spec).unwrap_err(), *err, "{spec}");
        }
    }

    #[test]
    fn resolves_by_family() {
        let any = ListenerSpec::parse("tcp::80").unwrap().resolve().unwrap();
        assert_eq!(any, vec!["[::]:80".parse().unwrap()]);
        let v4 = ListenerSpec::parse("tcp4::80").unwrap().resolve().unwrap();
        assert_eq!(v4, vec!["0.0.0.0:80".parse().unwrap()]);
        let wrong = ListenerSpec::parse("tcp6:127.0.0.1:80").unwrap().resolve();
        assert!(matches!(wrong, Err(SpecError::NoAddress { .. })));
        let off = ListenerSpec::parse("udp:").unwrap().resolve().unwrap();
        assert!(off.is_empty());
    }
}
