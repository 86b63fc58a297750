//! Compile-time checks of the literal values in the attribute: listener specs, durations
//! and the service name.
//!
//! The macro cannot call the runtime crate (the runtime depends on the macros), so the
//! listener-spec rules of `littleboss::spec::ListenerSpec::parse` are mirrored here; keep
//! the two in step. Every check returns the message of its error, and the caller puts it
//! on the span of the literal.

use std::net::Ipv6Addr;

/// The networks a listener spec may name, in the order messages list them.
const NETWORKS: &[&str] = &["tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix"];

/// Checks a listener spec `NETWORK:ADDRESS`, where ADDRESS is empty (the listener is off),
/// `:PORT`, `HOST:PORT` or `[IPV6]:PORT`. Host names are not resolved.
pub(crate) fn check_listener_spec(spec: &str) -> Result<(), String> {
    let Some((network, address)) = spec.split_once(':') else {
        return Err(format!(
            "listener spec `{spec}` is not NETWORK:ADDRESS (for example `tcp::443` or `udp:127.0.0.1:5353`)"
        ));
    };
    if !NETWORKS.contains(&network) {
        return Err(format!(
            "unknown network `{network}`; the networks are {}",
            backticked(NETWORKS)
        ));
    }
    if address.is_empty() {
        return Ok(());
    }
    if network == "unix" {
        // A path, or `@name` in the abstract namespace.
        if address.len() > 107 || address.contains('\0') {
            return Err(format!(
                "unix socket path `{address}` must be at most 107 bytes, without NUL"
            ));
        }
        return Ok(());
    }
    if address.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "address `{address}` is not HOST:PORT, :PORT or [IPV6]:PORT; for port {address} on every address, write `{network}::{address}`"
        ));
    }
    check_address(address)
}

/// Checks `HOST:PORT`, `:PORT` or `[IPV6]:PORT`.
fn check_address(addr: &str) -> Result<(), String> {
    let bad = || format!("address `{addr}` is not HOST:PORT, :PORT or [IPV6]:PORT");
    let port = if let Some(rest) = addr.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or_else(bad)?;
        let port = rest.strip_prefix(':').ok_or_else(bad)?;
        host.parse::<Ipv6Addr>().map_err(|_| bad())?;
        port
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            return Err(format!(
                "address `{addr}` has an IPv6 address without brackets; write it as [IPV6]:PORT, as in `[::1]:8080`"
            ));
        }
        port
    };
    // `u16::from_str` alone would take a leading `+`.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err()
    {
        return Err(format!(
            "port `{port}` in address `{addr}` is not a number from 0 to 65535"
        ));
    }
    Ok(())
}

/// Parses a duration written as an integer followed by `ms`, `s` or `m`, into milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "invalid duration `{text}`; write an integer followed by `ms`, `s` or `m`, as in `250ms`, `2s` or `1m`"
        )
    };
    let (number, millis_per_unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(invalid());
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .ok_or_else(|| format!("duration `{text}` is too large"))
}

/// Checks a service name: one or more of `A-Z`, `a-z`, `0-9`, `_` and `-`.
pub(crate) fn check_service_name(name: &str) -> Result<(), String> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if name.is_empty() || !name.bytes().all(valid) {
        return Err(format!(
            "invalid service name `{name}`; a name is one or more of `A-Z`, `a-z`, `0-9`, `_` and `-`"
        ));
    }
    Ok(())
}

/// The choices as "`a`, `b`, `c`".
/// The control flag's name: `[A-Za-z0-9_-]+`, not starting with `-`.
pub(crate) fn check_flag_name(name: &str) -> Result<(), String> {
    let fits = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if name.is_empty() || name.starts_with('-') || !name.bytes().all(fits) {
        return Err(format!(
            "invalid flag name `{name}`: use letters, digits, `-` and `_`, without leading dashes (`flag = \"lb\"` gives `--lb=start`)"
        ));
    }
    Ok(())
}

/// A file mode written in octal, as in `"0660"`.
pub(crate) fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if !digits.is_empty() && mode <= 0o7777 => Ok(mode),
        _ => Err(format!(
            "invalid mode `{text}`; write it in octal, as in `\"0660\"`"
        )),
    }
}

pub(crate) fn backticked(choices: &[&str]) -> String {
    choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_specs() {
        let good = [
            "tcp::443",
            "tcp4:127.0.0.1:0",
            "tcp6:[::1]:8080",
            "udp:127.0.0.1:5353",
            "udp4::53",
            "udp6:[::]:53",
            "tcp:localhost:80",
            "tcp::65535",
            "tcp:",
            "udp6:",
            "unix:/run/myblog.sock",
            "unix:@myblog",
            "unix:",
        ];
        for spec in good {
            assert_eq!(check_listener_spec(spec), Ok(()), "{spec}");
        }
    }

    #[test]
    fn rejects_bad_specs() {
        let bad = [
            ("tcp", "listener spec `tcp` is not NETWORK:ADDRESS"),
            ("", "listener spec `` is not NETWORK:ADDRESS"),
            (
                "sctp::1",
                "unknown network `sctp`; the networks are `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6`, `unix`",
            ),
            ("TCP::1", "unknown network `TCP`"),
            (":443", "unknown network ``"),
            (
                "tcp:443",
                "address `443` is not HOST:PORT, :PORT or [IPV6]:PORT; for port 443 on every address, write `tcp::443`",
            ),
            ("udp4:localhost", "address `localhost` is not HOST:PORT"),
            (
                "tcp:::1:80",
                "address `::1:80` has an IPv6 address without brackets",
            ),
            (
                "tcp6:fe80::1:80",
                "address `fe80::1:80` has an IPv6 address without brackets",
            ),
            ("tcp:[::1:80", "address `[::1:80` is not HOST:PORT"),
            ("tcp:[::1]80", "address `[::1]80` is not HOST:PORT"),
            ("tcp:[::1]", "address `[::1]` is not HOST:PORT"),
            (
                "tcp:[nothost]:80",
                "address `[nothost]:80` is not HOST:PORT",
            ),
            (
                "tcp::65536",
                "port `65536` in address `:65536` is not a number from 0 to 65535",
            ),
            ("tcp::+80", "port `+80` in address `:+80` is not a number"),
            ("tcp::-1", "port `-1` in address `:-1` is not a number"),
            (
                "tcp::http",
                "port `http` in address `:http` is not a number",
            ),
            (
                "udp:1.2.3.4:",
                "port `` in address `1.2.3.4:` is not a number",
            ),
            ("tcp:[::1]:", "port `` in address `[::1]:` is not a number"),
        ];
        for (spec, message) in bad {
            let err = check_listener_spec(spec).unwrap_err();
            assert!(err.starts_with(message), "{spec}: {err}");
        }
    }

    #[test]
    fn parses_durations() {
        let good = [
            ("250ms", 250),
            ("0ms", 0),
            ("2s", 2_000),
            ("30s", 30_000),
            ("1m", 60_000),
            ("007s", 7_000),
        ];
        for (text, millis) in good {
            assert_eq!(parse_duration(text), Ok(millis), "{text}");
        }
        let bad = [
            "", "2", "s", "ms", "1.5s", "2 s", " 2s", "2S", "2sec", "1h", "-1s", "+1s", "1e3ms",
            "2mss",
        ];
        for text in bad {
            let err = parse_duration(text).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid duration `{text}`; write an integer")),
                "{text}: {err}"
            );
            assert!(err.contains("`ms`, `s` or `m`"), "{text}: {err}");
        }
        for text in ["18446744073709551615s", "99999999999999999999ms"] {
            assert_eq!(
                parse_duration(text),
                Err(format!("duration `{text}` is too large"))
            );
        }
        assert_eq!(parse_duration("18446744073709551615ms"), Ok(u64::MAX));
    }

    #[test]
    fn checks_service_names() {
        for name in ["myblog", "my-blog_2", "A", "_", "-"] {
            assert_eq!(check_service_name(name), Ok(()), "{name}");
        }
        for name in ["", "my blog", "blog.example", "blog/x", "café", "a:b"] {
            let err = check_service_name(name).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid service name `{name}`;")),
                "{name}: {err}"
            );
        }
    }
}
