//! The fds the supervisor holds (listeners, executables), in one table; the state
//! refers to them by [`FdKey`], so that it stays a plain value.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::socket::SocketFile;

pub(crate) use super::state::FdKey;

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

    /// An fd the supervisor's previous image held under `key` (an upgrade).
    pub(crate) fn restore(&mut self, key: FdKey, fd: OwnedFd, file: Option<SocketFile>) {
        self.next = self.next.max(key);
        self.fds.insert(key, Entry { fd, file });
    }

    /// Every fd with its key and socket file.
    pub(crate) fn entries(
        &self,
    ) -> impl Iterator<Item = (FdKey, BorrowedFd<'_>, Option<&SocketFile>)> {
        self.fds
            .iter()
            .map(|(key, entry)| (*key, entry.fd.as_fd(), entry.file.as_ref()))
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
