//! Listener specs: `NETWORK:ADDRESS`, as in `tcp::443` or `udp:127.0.0.1:5353`.
//!
//! [`ListenerSpec::parse`] checks a spec's form without resolving host names, so the
//! attribute runs it at compile time on the literal and the runtime again on what the
//! builder and the listener flags give; [`resolve`] is the runtime's part.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// The network of a listener: the part of a spec before the first `:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
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

/// `a, b and c`, for messages that list the choices.
fn and_list(items: &[&str]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The longest unix socket path (or abstract name) Linux takes, in bytes.
const MAX_UNIX_PATH: usize = 107;

/// What kind of socket a network gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Parses one of [`NETWORKS`]: `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6` or `unix`.
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
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    /// The spec has no `:` between network and address.
    NoNetwork(String),
    /// The network is not one of [`NETWORKS`].
    UnknownNetwork(String),
    /// The address is not `HOST:PORT`, `:PORT` or `[IPV6]:PORT`.
    BadAddress(String),
    /// The address has an IPv6 host without brackets (`::1:80`): its port cannot be
    /// told apart.
    UnbracketedIpv6(String),
    /// The port is not a number from 0 to 65535.
    BadPort {
        /// The whole address.
        addr: String,
        /// The port part.
        port: String,
    },
    /// A unix socket path that Linux cannot take.
    BadPath(String),
    /// The host did not resolve to an address of the network.
    NoAddress {
        /// The whole address.
        addr: String,
        /// The network it had to be of.
        network: Network,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NoNetwork(spec) => write!(
                f,
                "listener spec {spec:?} is not NETWORK:ADDRESS (for example \"tcp::443\" or \"udp:127.0.0.1:5353\")"
            ),
            SpecError::UnknownNetwork(network) => write!(
                f,
                "unknown network {network:?}; the networks are {}",
                and_list(NETWORKS)
            ),
            SpecError::BadAddress(addr) => {
                write!(f, "address {addr:?} is not HOST:PORT, :PORT or [IPV6]:PORT")?;
                // `tcp:443` for `tcp::443` is the likely slip: say how to write it.
                if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) {
                    write!(f, "; for port {addr} on every address, write \":{addr}\"")?;
                }
                Ok(())
            }
            SpecError::UnbracketedIpv6(addr) => write!(
                f,
                "address {addr:?} has an IPv6 address without brackets; write it as [IPV6]:PORT, as in \"[::1]:8080\""
            ),
            SpecError::BadPort { addr, port } => write!(
                f,
                "port {port:?} in address {addr:?} is not a number from 0 to 65535"
            ),
            SpecError::BadPath(path) => write!(
                f,
                "unix socket path {path:?} must be at most {MAX_UNIX_PATH} bytes, without NUL"
            ),
            SpecError::NoAddress { addr, network } => {
                write!(f, "host in {addr:?} has no {network} address")
            }
        }
    }
}

impl std::error::Error for SpecError {}

/// A parsed listener spec: a network and an address, or no address (the listener is off).
///
/// Made by [`parse`](Self::parse) or [`with_address`](Self::with_address), which check
/// the address's form; more fields may come.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// use littleboss_rules::spec::{ListenerSpec, Network};
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

    /// The socket addresses to bind: see [`resolve`].
    fn addresses(&self) -> Result<Vec<SocketAddr>, SpecError> {
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

/// The socket addresses to bind `spec` to, in order of preference: host names are
/// resolved here (which may ask DNS, and block). Empty for a listener that is off, or a
/// unix one. A free function, not a method, so that the `littleboss` crate's `spec`
/// module, which re-exports what a program needs, leaves it out.
pub fn resolve(spec: &ListenerSpec) -> Result<Vec<SocketAddr>, SpecError> {
    spec.addresses()
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
            return Err(SpecError::UnbracketedIpv6(addr.to_string()));
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
            ("tcp::0", Network::Tcp, Some(":0")),
            ("tcp::65535", Network::Tcp, Some(":65535")),
            ("tcp::00080", Network::Tcp, Some(":00080")),
            ("tcp:", Network::Tcp, None),
            ("udp6:", Network::Udp6, None),
            ("unix:/run/x.sock", Network::Unix, Some("/run/x.sock")),
            ("unix:@abstract", Network::Unix, Some("@abstract")),
            ("unix:relative.sock", Network::Unix, Some("relative.sock")),
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
    fn every_network_parses_by_its_name() {
        for name in NETWORKS {
            assert_eq!(Network::parse(name).unwrap().as_str(), *name);
        }
    }

    #[test]
    fn rejects_bad_specs() {
        let long = format!("/{}", "x".repeat(MAX_UNIX_PATH));
        let cases: &[(&str, SpecError)] = &[
            ("tcp", SpecError::NoNetwork("tcp".into())),
            ("", SpecError::NoNetwork("".into())),
            ("sctp::1", SpecError::UnknownNetwork("sctp".into())),
            ("TCP::1", SpecError::UnknownNetwork("TCP".into())),
            (":443", SpecError::UnknownNetwork("".into())),
            ("tcp:443", SpecError::BadAddress("443".into())),
            ("udp4:localhost", SpecError::BadAddress("localhost".into())),
            ("tcp:::1:80", SpecError::UnbracketedIpv6("::1:80".into())),
            (
                "tcp6:fe80::1:80",
                SpecError::UnbracketedIpv6("fe80::1:80".into()),
            ),
            ("tcp:[::1:80", SpecError::BadAddress("[::1:80".into())),
            ("tcp:[::1]80", SpecError::BadAddress("[::1]80".into())),
            ("tcp:[::1]", SpecError::BadAddress("[::1]".into())),
            (
                "tcp:[nothost]:80",
                SpecError::BadAddress("[nothost]:80".into()),
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
                "tcp::-1",
                SpecError::BadPort {
                    addr: ":-1".into(),
                    port: "-1".into(),
                },
            ),
            (
                "tcp::http",
                SpecError::BadPort {
                    addr: ":http".into(),
                    port: "http".into(),
                },
            ),
            (
                "udp:1.2.3.4:",
                SpecError::BadPort {
                    addr: "1.2.3.4:".into(),
                    port: "".into(),
                },
            ),
            (
                "tcp:[::1]:",
                SpecError::BadPort {
                    addr: "[::1]:".into(),
                    port: "".into(),
                },
            ),
            ("unix:a\0b", SpecError::BadPath("a\0b".into())),
        ];
        for (spec, err) in cases {
            assert_eq!(ListenerSpec::parse(spec).unwrap_err(), *err, "{spec:?}");
        }
        let too_long = format!("unix:{long}");
        assert_eq!(
            ListenerSpec::parse(&too_long).unwrap_err(),
            SpecError::BadPath(long.clone())
        );
        let longest = format!("unix:{}", &long[..MAX_UNIX_PATH]);
        assert!(ListenerSpec::parse(&longest).is_ok());
    }

    #[test]
    fn messages() {
        let cases: &[(&str, &str)] = &[
            (
                "tcp",
                "listener spec \"tcp\" is not NETWORK:ADDRESS (for example \"tcp::443\" or \"udp:127.0.0.1:5353\")",
            ),
            (
                "sctp::1",
                "unknown network \"sctp\"; the networks are tcp, tcp4, tcp6, udp, udp4, udp6 and unix",
            ),
            (
                "tcp:443",
                "address \"443\" is not HOST:PORT, :PORT or [IPV6]:PORT; for port 443 on every address, write \":443\"",
            ),
            (
                "tcp:nonsense",
                "address \"nonsense\" is not HOST:PORT, :PORT or [IPV6]:PORT",
            ),
            (
                "tcp:::1:80",
                "address \"::1:80\" has an IPv6 address without brackets; write it as [IPV6]:PORT, as in \"[::1]:8080\"",
            ),
            (
                "tcp::65536",
                "port \"65536\" in address \":65536\" is not a number from 0 to 65535",
            ),
            (
                "unix:a\0b",
                "unix socket path \"a\\0b\" must be at most 107 bytes, without NUL",
            ),
        ];
        for (spec, message) in cases {
            assert_eq!(
                ListenerSpec::parse(spec).unwrap_err().to_string(),
                *message,
                "{spec:?}"
            );
        }
    }

    #[test]
    fn a_flag_address_is_checked_as_in_a_spec() {
        let spec = ListenerSpec::with_address(Network::Udp, "127.0.0.1:53").unwrap();
        assert_eq!(spec.to_string(), "udp:127.0.0.1:53");
        assert_eq!(
            ListenerSpec::with_address(Network::Tcp, "")
                .unwrap()
                .address,
            None
        );
        assert_eq!(
            ListenerSpec::with_address(Network::Tcp, "80").unwrap_err(),
            SpecError::BadAddress("80".into())
        );
    }

    #[test]
    fn resolves_by_family() {
        let resolved = |spec: &str| resolve(&ListenerSpec::parse(spec).unwrap());
        let any = resolved("tcp::80").unwrap();
        assert_eq!(any, vec!["[::]:80".parse().unwrap()]);
        let v4 = resolved("tcp4::80").unwrap();
        assert_eq!(v4, vec!["0.0.0.0:80".parse().unwrap()]);
        let wrong = resolved("tcp6:127.0.0.1:80");
        assert!(matches!(wrong, Err(SpecError::NoAddress { .. })));
        let off = resolved("udp:").unwrap();
        assert!(off.is_empty());
        let unix = resolved("unix:/run/x.sock");
        assert_eq!(unix, Ok(Vec::new()));
    }
}
