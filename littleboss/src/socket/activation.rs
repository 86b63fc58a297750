//! systemd socket activation: sockets passed as `LISTEN_FDS` (named by
//! `LISTEN_FDNAMES`) are adopted by the declared listeners of the same name instead of
//! being bound.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::FdFlags;
use rustix::net::{AddressFamily, SocketType, sockopt};

use super::{Bound, BoundAddr};
use crate::environ;
use crate::spec::{Kind, Network};
use crate::sys;

/// The first fd systemd passes.
const FIRST_FD: i32 = 3;

/// Sockets passed by systemd, by name.
#[derive(Debug, Default)]
pub(crate) struct Activated {
    sockets: Vec<(String, OwnedFd)>,
}

/// Whether a call of [`take`] has taken the sockets: they are this process's to own once.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the sockets systemd passed to this process, if any.
///
/// The variables are read from the environment as it was at start, and left as they
/// are (children get an environment without them); a second call takes nothing.
pub(crate) fn take() -> Activated {
    let var = |name: &str| environ::var(name).and_then(|v| v.to_str());
    let (fds, pid, names) = (var("LISTEN_FDS"), var("LISTEN_PID"), var("LISTEN_FDNAMES"));
    let ours = pid.and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count = fds.and_then(|n| n.parse::<i32>().ok()).unwrap_or(0);
    if !ours || count <= 0 || TAKEN.swap(true, Ordering::SeqCst) {
        return Activated::default();
    }
    let names: Vec<String> = names
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut sockets = Vec::new();
    for (i, raw) in (FIRST_FD..FIRST_FD.saturating_add(count)).enumerate() {
        if !sys::is_open(raw) {
            continue;
        }
        // SAFETY: the fd is open (checked above) and systemd passed it to this process
        // alone (LISTEN_PID is our pid); the variables are its only record, and `TAKEN`
        // lets only one call of `take` in the process read them, so nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let _ = rustix::io::fcntl_setfd(&fd, FdFlags::CLOEXEC);
        let name = names
            .get(i)
            .cloned()
            .unwrap_or_else(|| "unknown".to_string());
        sockets.push((name, fd));
    }
    Activated { sockets }
}

impl Activated {
    /// The socket passed under `name`, checked against the listener's network.
    pub(crate) fn adopt(&mut self, name: &str, network: Network) -> Option<io::Result<Bound>> {
        let at = self.sockets.iter().position(|(n, _)| n == name)?;
        let (_, fd) = self.sockets.remove(at);
        Some(check(name, network, fd))
    }

    /// The names of the sockets no listener adopted (they are closed).
    pub(crate) fn unused(self) -> Vec<String> {
        self.sockets.into_iter().map(|(name, _)| name).collect()
    }
}

fn check(name: &str, network: Network, fd: OwnedFd) -> io::Result<Bound> {
    let mismatch = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the socket systemd passed as {name:?} is {what}, but the listener is {network}"
            ),
        )
    };
    let kind = sockopt::socket_type(&fd)?;
    let domain = sys::socket_family(fd.as_fd())?;
    let Some((want_kind, domains)) = super::socket_kind(network) else {
        return Err(mismatch(format!(
            "a socket for {network}, which cannot be adopted"
        )));
    };
    if kind != want_kind {
        let what = if kind == SocketType::DGRAM {
            "a datagram socket"
        } else {
            "not a datagram socket"
        };
        return Err(mismatch(what.to_string()));
    }
    if !domains.contains(&domain) {
        let what = match domain {
            AddressFamily::INET => "IPv4",
            AddressFamily::INET6 => "IPv6",
            AddressFamily::UNIX => "a unix socket",
            _ => "of another family",
        };
        return Err(mismatch(what.to_string()));
    }
    // Where the system cannot tell (macOS), a socket that does not listen fails at
    // its first accept instead.
    if network.kind() != Kind::Udp && sys::is_listening(fd.as_fd())? == Some(false) {
        return Err(mismatch("not listening".to_string()));
    }
    let local = rustix::net::getsockname(&fd)?;
    let addr = if network == Network::Unix {
        let shown = local
            .clone()
            .try_into()
            .ok()
            .and_then(|unix: rustix::net::SocketAddrUnix| {
                unix.path()
                    .map(|p| p.to_string_lossy().into_owned())
                    .or_else(|| sys::abstract_name(&unix))
            })
            .unwrap_or_else(|| "(unnamed)".to_string());
        BoundAddr::Unix(shown)
    } else {
        BoundAddr::Ip(
            std::net::SocketAddr::try_from(local).map_err(|_| io::Error::other("no IP address"))?,
        )
    };
    Ok(Bound {
        fd,
        addr,
        file: None,
    })
}
