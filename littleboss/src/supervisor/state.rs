//! The supervisor's state: one serializable structure, with its fds in one table.
//!
//! Everything the supervisor knows is in [`State`]; the fds it holds (listeners,
//! executables) are in [`FdTable`] and referred to from the state by [`FdKey`]. That
//! split is what lets a future supervisor hand itself over to a new binary: serialize
//! the state, pass the table's fds.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;

use crate::control::protocol::{self, Status};
use crate::socket::{self, BoundAddr, SocketFile};
use crate::spec::Network;

/// A key into the [`FdTable`].
pub(crate) type FdKey = u64;

/// The fds the supervisor holds. A unix listener's socket file goes with its fd.
#[derive(Debug, Default)]
pub(crate) struct FdTable {
    next: FdKey,
    fds: BTreeMap<FdKey, Entry>,
}

#[derive(Debug)]
struct Entry {
    fd: OwnedFd,
    file: Option<SocketFile>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            file.remove();
        }
    }
}

impl FdTable {
    pub(crate) fn insert(&mut self, fd: OwnedFd) -> FdKey {
        self.insert_with_file(fd, None)
    }

    /// Inserts a listener's fd with the socket file to remove when it is closed.
    pub(crate) fn insert_with_file(&mut self, fd: OwnedFd, file: Option<SocketFile>) -> FdKey {
        self.next += 1;
        self.fds.insert(self.next, Entry { fd, file });
        self.next
    }

    pub(crate) fn get(&self, key: FdKey) -> Option<BorrowedFd<'_>> {
        self.fds.get(&key).map(|entry| entry.fd.as_fd())
    }

    /// Closes every fd whose key is not in `keep`.
    pub(crate) fn retain(&mut self, keep: &BTreeSet<FdKey>) {
        self.fds.retain(|key, _| keep.contains(key));
    }

    /// Closes every fd (and removes the socket files).
    pub(crate) fn clear(&mut self) {
        self.fds.clear();
    }
}

/// Where the supervisor is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum Phase {
    /// No child has been ready yet (first start, or a restart).
    Starting,
    Running,
    /// A new child is starting beside the serving one.
    Reloading,
    Stopping,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Reloading => "reloading",
            Phase::Stopping => "stopping",
        }
    }
}

/// A listener as the supervisor holds it.
#[derive(Clone, Debug, Serialize)]
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
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ProgramRecord {
    pub path: PathBuf,
    pub args: Vec<OsString>,
    pub exe: FdKey,
}

/// A child process the supervisor started.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChildRecord {
    pub id: u64,
    pub pid: u32,
    pub program: ProgramRecord,
    /// The whole command line the child got (the program's, with the listener flags).
    pub argv: Vec<OsString>,
    pub listeners: Vec<ListenerRecord>,
    pub started: SystemTime,
    pub ready: bool,
}

/// Everything the supervisor knows.
#[derive(Debug, Serialize)]
pub(crate) struct State {
    pub name: String,
    pub pid: u32,
    pub started: SystemTime,
    pub phase: Phase,
    /// The listeners a new child gets.
    pub listeners: Vec<ListenerRecord>,
    /// The child that serves (or is starting to, in [`Phase::Starting`]).
    pub current: Option<ChildRecord>,
    /// The child a reload is starting.
    pub next: Option<ChildRecord>,
    /// Old children in lameduck.
    pub draining: Vec<ChildRecord>,
    /// The program a failing reloaded child falls back to.
    pub previous: Option<ProgramRecord>,
    /// The program to start again after a backoff (persist), if one is waiting.
    pub waiting: Option<ProgramRecord>,
    pub reloads: u64,
    pub failures: u64,
    pub restarts: u64,
}

impl State {
    /// Every fd key the state refers to: the fds to keep.
    pub(crate) fn fd_keys(&self) -> BTreeSet<FdKey> {
        let mut keys = BTreeSet::new();
        let mut listeners = |set: &[ListenerRecord]| {
            keys.extend(
                set.iter()
                    .filter_map(|l| l.bound.as_ref().map(|(_, key)| *key)),
            );
        };
        listeners(&self.listeners);
        let children = self
            .current
            .iter()
            .chain(self.next.iter())
            .chain(self.draining.iter());
        let mut exes = BTreeSet::new();
        for child in children {
            listeners(&child.listeners);
            exes.insert(child.program.exe);
        }
        exes.extend(
            self.previous
                .iter()
                .chain(self.waiting.iter())
                .map(|p| p.exe),
        );
        keys.extend(exes);
        keys
    }

    /// What `status` reports.
    pub(crate) fn status(&self) -> Status {
        let current = self.current.as_ref();
        Status {
            name: self.name.clone(),
            protocol: protocol::PROTOCOL,
            supervisor_pid: self.pid,
            supervisor_started: rfc3339(self.started),
            child_pid: current.map(|c| c.pid),
            child_path: current.map(|c| c.program.path.display().to_string()),
            child_args: current
                .map(|c| {
                    c.argv
                        .iter()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            child_started: current.map(|c| rfc3339(c.started)),
            previous_path: self.previous.as_ref().map(|p| p.path.display().to_string()),
            reloads: self.reloads,
            failures: self.failures,
            restarts: self.restarts,
            state: self.phase.as_str().to_string(),
            listeners: self
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.shown()))
                .collect(),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
