//! The fds of connections children handed over (with the session of a TLS one, which
//! the machine never sees), held by the supervisor from the task that received them
//! until the machine forwards or returns them, and the bound on how
//! many one child may have held at once; and the fds of the state-transfer messages a
//! child sent, held from their arrival until the machine relays or drops them.
//!
//! The bound is what paces a child handing thousands of connections over: once it has
//! [`HOLD_MAX`] held, its task reads nothing more of its channel until some have gone
//! on (its messages wait in the socket, and its writer in the kernel). So the
//! supervisor never holds more fds for one child than that, and the answers of the
//! child that takes them are never queued behind thousands of hand-overs. An upgrade
//! about to re-execute pauses the children handing over
//! ([`Machine::paused_senders`](super::machine::Machine::paused_senders)), so that what
//! is held here only goes on, and the next image reads the rest.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use super::machine::ChildId;
use crate::secret::Secret;

/// The most connections of one child held at once: twice the default cap of those on
/// their way, so that the way stays full.
pub(crate) const HOLD_MAX: usize = 2048;

/// The fds held, by (sender, its id for the connection).
#[derive(Debug, Default)]
pub(crate) struct Parcels {
    inner: Mutex<Inner>,
    /// Woken whenever fds leave, for a sender's task waiting for room.
    left: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    fds: HashMap<(ChildId, u64), (OwnedFd, Option<Secret>)>,
    /// How many each child has held.
    counts: HashMap<ChildId, usize>,
    /// Children not to be read for now, whatever they have held (an upgrade waits for
    /// what is held to go on).
    paused: BTreeSet<ChildId>,
    /// The fds of each child's state-transfer messages, one entry a message, oldest
    /// first: the machine relays or drops each, in order (`Effect::RelayState`,
    /// `Effect::DropState`).
    states: HashMap<ChildId, VecDeque<Vec<OwnedFd>>>,
}

impl Parcels {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds `fd`, connection `id` of `child`, with its TLS session if it has one. An id
    /// held already is replaced (and its fd closed): the channel's decoder lets no
    /// child hand one id over twice at once.
    pub(crate) fn hold(&self, child: ChildId, id: u64, fd: OwnedFd, session: Option<Secret>) {
        let mut inner = self.lock();
        if inner.fds.insert((child, id), (fd, session)).is_none() {
            *inner.counts.entry(child).or_default() += 1;
        }
    }

    /// Takes the held fd of connection `id` of `child`, and its TLS session.
    pub(crate) fn take(&self, child: ChildId, id: u64) -> Option<(OwnedFd, Option<Secret>)> {
        let mut inner = self.lock();
        let fd = inner.fds.remove(&(child, id))?;
        if let Some(count) = inner.counts.get_mut(&child) {
            *count = count.saturating_sub(1);
        }
        drop(inner);
        self.left.notify_waiters();
        Some(fd)
    }

    /// Holds the fds of a state-transfer message of `child`, after those of its
    /// earlier ones.
    pub(crate) fn hold_state(&self, child: ChildId, fds: Vec<OwnedFd>) {
        self.lock().states.entry(child).or_default().push_back(fds);
    }

    /// Takes the fds of the oldest state-transfer message of `child` held.
    pub(crate) fn take_state(&self, child: ChildId) -> Vec<OwnedFd> {
        let mut inner = self.lock();
        let Some(queue) = inner.states.get_mut(&child) else {
            return Vec::new();
        };
        let fds = queue.pop_front().unwrap_or_default();
        if queue.is_empty() {
            inner.states.remove(&child);
        }
        fds
    }

    /// How many fds of state-transfer messages are held, for the tests.
    #[cfg(test)]
    pub(crate) fn states_held(&self) -> usize {
        self.lock().states.values().flatten().map(Vec::len).sum()
    }

    /// Closes every held fd that `child` handed over, connections and state.
    pub(crate) fn drop_child(&self, child: ChildId) {
        let mut inner = self.lock();
        inner.fds.retain(|(from, _), _| *from != child);
        inner.counts.remove(&child);
        inner.states.remove(&child);
        drop(inner);
        self.left.notify_waiters();
    }

    /// Pauses `children` (and only them): their tasks read nothing more of them until
    /// they are no longer paused.
    pub(crate) fn pause(&self, children: BTreeSet<ChildId>) {
        let mut inner = self.lock();
        if inner.paused == children {
            return;
        }
        inner.paused = children;
        drop(inner);
        self.left.notify_waiters();
    }

    /// Whether `child` is not to be read for now: it has as many held as it may, or
    /// it is paused.
    pub(crate) fn full(&self, child: ChildId) -> bool {
        let inner = self.lock();
        inner.counts.get(&child).copied().unwrap_or(0) >= HOLD_MAX || inner.paused.contains(&child)
    }

    /// Resolves once `child` has room again (at once if it has).
    pub(crate) async fn room_for(&self, child: ChildId) {
        loop {
            let left = self.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            if !self.full(child) {
                return;
            }
            left.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        OwnedFd::from(tempfile::tempfile().unwrap())
    }

    #[tokio::test]
    async fn a_child_with_as_many_held_as_it_may_waits_for_one_to_go_on() {
        let parcels = std::sync::Arc::new(Parcels::default());
        let (a, b) = (ChildId(1), ChildId(2));
        for id in 0..HOLD_MAX as u64 {
            parcels.hold(a, id, fd(), None);
        }
        parcels.hold(b, 0, fd(), None);
        assert!(parcels.full(a));
        assert!(!parcels.full(b), "each child has its own room");
        // Held twice under one id counts once.
        parcels.hold(b, 0, fd(), None);
        let waiting = tokio::spawn({
            let parcels = std::sync::Arc::clone(&parcels);
            async move { parcels.room_for(a).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(parcels.take(a, 7).is_some());
        assert!(parcels.take(a, 7).is_none(), "taken once");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
        parcels.drop_child(a);
        assert!(parcels.take(a, 8).is_none(), "closed with its child");
        assert!(parcels.take(b, 0).is_some());
        // A paused child waits, whatever it holds, until it is no longer paused.
        parcels.pause(BTreeSet::from([b]));
        assert!(parcels.full(b) && !parcels.full(a));
        let waiting = tokio::spawn({
            let parcels = std::sync::Arc::clone(&parcels);
            async move { parcels.room_for(b).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        parcels.pause(BTreeSet::new());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
    }

    #[test]
    fn state_fds_go_on_message_by_message_in_order_and_with_their_child() {
        let parcels = Parcels::default();
        let (a, b) = (ChildId(1), ChildId(2));
        parcels.hold_state(a, vec![fd()]);
        parcels.hold_state(a, vec![fd(), fd()]);
        parcels.hold_state(b, vec![fd()]);
        assert_eq!(parcels.states_held(), 4);
        assert_eq!(parcels.take_state(a).len(), 1, "the oldest first");
        assert_eq!(parcels.take_state(a).len(), 2);
        assert!(parcels.take_state(a).is_empty(), "nothing more held");
        parcels.drop_child(b);
        assert_eq!(parcels.states_held(), 0, "closed with their child");
    }
}
