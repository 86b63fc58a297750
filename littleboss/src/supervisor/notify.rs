//! systemd's notify protocol: the supervisor, whose pid never changes, tells systemd
//! when the service is ready, reloading and stopping (`Type=notify-reload` works).
//!
//! Each message is one datagram of `KEY=VALUE` lines sent to the unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Children never see
//! the variable.

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
    pub(crate) fn from_env() -> Option<Result<Notify, String>> {
        let value = crate::environ::var("NOTIFY_SOCKET").filter(|v| !v.is_empty())?;
        Some(Notify::connect(&value.to_string_lossy()))
    }

    fn connect(name: &str) -> Result<Notify, String> {
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => sys::abstract_address(abstract_name)
                .map_err(|e| format!("NOTIFY_SOCKET={name:?}: {e}"))?,
            None if name.starts_with('/') => {
                SocketAddrUnix::new(name).map_err(|e| format!("NOTIFY_SOCKET={name:?}: {e}"))?
            }
            None => return Err(format!("NOTIFY_SOCKET={name:?} is not a path or @name")),
        };
        let fd = sys::socket(AddressFamily::UNIX, SocketType::DGRAM)
            .map_err(|e| format!("notify socket: {e}"))?;
        Ok(Notify { fd, addr })
    }

    /// Sends `state` (`READY=1\nSTATUS=...`); a failure is returned for the log.
    pub(crate) fn send(&self, state: &str) -> Result<(), String> {
        rustix::net::sendto(
            &self.fd,
            state.as_bytes(),
            sys::SEND_NOSIGNAL | SendFlags::DONTWAIT,
            &self.addr,
        )
        .map(drop)
        .map_err(|e| format!("sd_notify: {e}"))
    }
}

/// `RELOADING=1` with the monotonic time systemd asks for.
pub(crate) fn reloading(status: &str) -> String {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}")
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
        assert!(Notify::connect("relative").is_err());
    }
}
