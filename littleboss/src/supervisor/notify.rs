//! systemd's notify protocol: the supervisor, whose pid never changes, tells systemd
//! when the service is ready, reloading and stopping (`Type=notify-reload` works).
//!
//! Each message is one datagram of `KEY=VALUE` lines sent to the unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Children never see
//! the variable.

use std::io;
use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketType};

use crate::sys;

/// A connection to systemd's notify socket.
#[derive(Debug)]
pub(crate) struct Notify {
    fd: OwnedFd,
    addr: SocketAddrUnix,
}

impl Notify {
    /// The notify socket named by `NOTIFY_SOCKET`, if it is set.
    pub(crate) fn from_env() -> Option<Result<Notify, NotifyError>> {
        let value = crate::environ::var("NOTIFY_SOCKET").filter(|v| !v.is_empty())?;
        Some(Notify::connect(&value.to_string_lossy()))
    }

    fn connect(name: &str) -> Result<Notify, NotifyError> {
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => {
                sys::abstract_address(abstract_name).map_err(|source| NotifyError::Abstract {
                    name: name.to_string(),
                    source,
                })?
            }
            None if name.starts_with('/') => {
                SocketAddrUnix::new(name).map_err(|e| NotifyError::Path {
                    name: name.to_string(),
                    source: e.into(),
                })?
            }
            None => {
                return Err(NotifyError::NotAddress {
                    name: name.to_string(),
                });
            }
        };
        let fd =
            sys::socket(AddressFamily::UNIX, SocketType::DGRAM).map_err(NotifyError::Socket)?;
        Ok(Notify { fd, addr })
    }

    /// Sends `state` (`READY=1\nSTATUS=...`); a failure is returned for the log.
    pub(crate) fn send(&self, state: &str) -> Result<(), NotifyError> {
        rustix::net::sendto(
            &self.fd,
            state.as_bytes(),
            sys::SEND_NOSIGNAL | SendFlags::DONTWAIT,
            &self.addr,
        )
        .map(drop)
        .map_err(|e| NotifyError::Send(e.into()))
    }
}

/// Why systemd cannot be told: `NOTIFY_SOCKET` names no address, or the socket failed.
/// The supervisor logs it and goes on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotifyError {
    /// `@name`, where the system has no such name.
    #[error("NOTIFY_SOCKET={name:?}: {source}")]
    Abstract {
        name: String,
        #[source]
        source: sys::AbstractError,
    },
    /// A path that a unix address cannot hold.
    #[error("NOTIFY_SOCKET={name:?}: {source}")]
    Path {
        name: String,
        #[source]
        source: io::Error,
    },
    /// Neither a path nor `@name`.
    #[error("NOTIFY_SOCKET={name:?} is not a path or @name")]
    NotAddress { name: String },
    /// No socket to send from.
    #[error("notify socket: {0}")]
    Socket(#[source] io::Error),
    /// A message was not sent.
    #[error("sd_notify: {0}")]
    Send(#[source] io::Error),
}

/// `RELOADING=1` with the monotonic time systemd asks for.
pub(crate) fn reloading(status: &str) -> String {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}")
}

/// `EXTEND_TIMEOUT_USEC` for a probation of `ms`, with a margin for its verdict: the
/// reload job waits for the `READY=1` that comes with it.
pub(crate) fn extend(ms: u64) -> String {
    let usec = ms.saturating_add(10_000).saturating_mul(1000);
    format!("EXTEND_TIMEOUT_USEC={usec}\nSTATUS=reloaded; the new child is on probation")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let notify = Notify::connect(path.to_str().unwrap()).unwrap();
        notify.send("READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");

        let name = format!("littleboss-notify-test-{}", std::process::id());
        let addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_receiver = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        let notify = Notify::connect(&format!("@{name}")).unwrap();
        notify.send(&reloading("reloading")).unwrap();
        let n = abstract_receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let relative = Notify::connect("relative").unwrap_err();
        assert_eq!(
            relative.to_string(),
            "NOTIFY_SOCKET=\"relative\" is not a path or @name"
        );
    }
}
