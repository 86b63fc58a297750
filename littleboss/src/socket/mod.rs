//! The sockets a service listens on: bound here ([`listener`]) or passed by systemd
//! ([`activation`]), and the types both hand to the rest of the crate.

pub(crate) mod activation;
pub(crate) mod listener;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::net::{AddressFamily, SocketType};
use serde::{Deserialize, Serialize};

use crate::spec::Network;

pub(crate) use crate::sys::describe;
pub(crate) use listener::{bind, open_all};

/// The socket type and the address families of a listener of `network`, or `None` for
/// a network this build cannot open: the one table of them, which binding and the
/// adoption of systemd's sockets both read.
pub(crate) fn socket_kind(network: Network) -> Option<(SocketType, &'static [AddressFamily])> {
    const IP: &[AddressFamily] = &[AddressFamily::INET, AddressFamily::INET6];
    const V4: &[AddressFamily] = &[AddressFamily::INET];
    const V6: &[AddressFamily] = &[AddressFamily::INET6];
    Some(match network {
        Network::Tcp => (SocketType::STREAM, IP),
        Network::Tcp4 => (SocketType::STREAM, V4),
        Network::Tcp6 => (SocketType::STREAM, V6),
        Network::Udp => (SocketType::DGRAM, IP),
        Network::Udp4 => (SocketType::DGRAM, V4),
        Network::Udp6 => (SocketType::DGRAM, V6),
        Network::Unix => (SocketType::STREAM, &[AddressFamily::UNIX]),
        _ => return None,
    })
}

/// Where a listener is bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum BoundAddr {
    /// An IP address and port, as the kernel gave it (so `:0` shows its port).
    Ip(SocketAddr),
    /// A unix socket path, or `@name` in the abstract namespace.
    Unix(String),
}

impl fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundAddr::Ip(addr) => addr.fmt(f),
            BoundAddr::Unix(path) => f.write_str(path),
        }
    }
}

/// A bound socket and its address.
#[derive(Debug)]
pub(crate) struct Bound {
    pub fd: OwnedFd,
    pub addr: BoundAddr,
    /// The socket file of a unix listener bound to a path.
    pub file: Option<SocketFile>,
}

/// The file a unix listener created, identified so that only that file is removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The file's path, device and inode, for the upgrade's handover.
    pub(crate) fn parts(&self) -> (&Path, u64, u64) {
        (&self.path, self.dev, self.ino)
    }

    /// The record of a file from its [`parts`](Self::parts), as a handover gives them.
    pub(crate) fn from_parts(path: PathBuf, dev: u64, ino: u64) -> SocketFile {
        SocketFile { path, dev, ino }
    }

    pub(crate) fn of(path: &Path) -> io::Result<SocketFile> {
        let stat = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            dev: stat.dev(),
            ino: stat.ino(),
        })
    }

    /// Removes the file if it is still the one this listener created (a later process
    /// may have put its own socket at the path).
    pub(crate) fn remove(&self) {
        if let Ok(now) = std::fs::symlink_metadata(&self.path) {
            if now.dev() == self.dev && now.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// `tcp:127.0.0.1:41234`: a bound listener as `status` shows it.
pub(crate) fn shown(network: Network, addr: &BoundAddr) -> String {
    format!("{network}:{addr}")
}
