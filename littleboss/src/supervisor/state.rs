//! The records the supervisor's state is made of: listeners and programs, with their
//! fds named by key (the fds themselves are in [`FdTable`](super::fds::FdTable)).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::socket::{self, BoundAddr};
use crate::spec::Network;

/// A key into the [`FdTable`](super::fds::FdTable).
pub(crate) type FdKey = u64;

/// A listener as the supervisor holds it.
#[derive(Clone, Debug)]
pub(crate) struct ListenerRecord {
    pub name: String,
    pub network: Network,
    /// The bound address and the socket's key, or `None` if the listener is off.
    pub bound: Option<(BoundAddr, FdKey)>,
}

impl ListenerRecord {
    /// `tcp:127.0.0.1:41234`, or `off`.
    pub(crate) fn shown(&self) -> String {
        match &self.bound {
            Some((addr, _)) => socket::shown(self.network, addr),
            None => "off".to_string(),
        }
    }
}

/// A binary and its arguments, with the fd of the file that was checked.
#[derive(Clone, Debug)]
pub(crate) struct ProgramRecord {
    pub path: PathBuf,
    pub args: Vec<OsString>,
    pub exe: FdKey,
}

/// `http=tcp:127.0.0.1:8080, admin=off`, or `none`.
pub(crate) fn listeners_shown(listeners: &[ListenerRecord]) -> String {
    let shown: Vec<String> = listeners
        .iter()
        .map(|l| format!("{}={}", l.name, l.shown()))
        .collect();
    if shown.is_empty() {
        "none".to_string()
    } else {
        shown.join(", ")
    }
}

/// RFC 3339 UTC with milliseconds, as `status` shows times.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
