//! Every deadline of the supervisor, in one table: what each is for, and when it is due.
//!
//! There are deadlines per child (its hello, its readiness, its lameduck), per
//! connection on its way between children (its recall), and one each for a restart and
//! an upgrade's re-execution. Each is an entry keyed by what it is for ([`Timer`]);
//! setting one replaces the entry of the same key, and [`Timers::next`] is the first
//! entry by time. The machine sleeps until then, as quinn-proto's connection does
//! with its own timer table.

use std::collections::{BTreeMap, BTreeSet};

use super::{ChildId, Time};

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// The child must say hello by then, or it is killed.
    Hello(ChildId),
    /// The child, settling, counts as ready then.
    Settled(ChildId),
    /// The child, which calls `ready()`, must have by then, or it is killed.
    Ready(ChildId),
    /// The child, in lameduck, is killed then.
    Kill(ChildId),
    /// Persist: the program is started again then.
    Restart,
    /// The connection forwarded under this id is recalled then, unless its receiver
    /// has answered for it.
    Recall(u64),
    /// An upgrade re-executes then, even with connections still on their way.
    Exec,
    /// The probation under way ends then, as passed.
    Probation,
    /// The state this new child asked for is due then, or it is told none came
    /// ([`transfer`](super::transfer)).
    StateAnswer(ChildId),
}

impl Timer {
    /// The child the deadline belongs to, if it belongs to one.
    #[cfg(test)]
    pub(crate) fn child(self) -> Option<ChildId> {
        match self {
            Timer::Hello(id) | Timer::Settled(id) | Timer::Ready(id) | Timer::Kill(id) => Some(id),
            Timer::Restart
            | Timer::Recall(_)
            | Timer::Exec
            | Timer::Probation
            | Timer::StateAnswer(_) => None,
        }
    }
}

/// The table: each [`Timer`] at most once, ordered by when it is due.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    due: BTreeMap<Timer, Time>,
    order: BTreeSet<(Time, Timer)>,
}

impl Timers {
    /// Sets `timer` to `at`, in place of any earlier setting.
    pub(crate) fn set(&mut self, timer: Timer, at: Time) {
        if let Some(before) = self.due.insert(timer, at) {
            self.order.remove(&(before, timer));
        }
        self.order.insert((at, timer));
    }

    /// Removes `timer`; when it was due, if it was set.
    pub(crate) fn cancel(&mut self, timer: Timer) -> Option<Time> {
        let at = self.due.remove(&timer)?;
        self.order.remove(&(at, timer));
        Some(at)
    }

    /// Removes every deadline of `child`.
    pub(crate) fn cancel_child(&mut self, child: ChildId) {
        for timer in [
            Timer::Hello(child),
            Timer::Settled(child),
            Timer::Ready(child),
            Timer::Kill(child),
        ] {
            self.cancel(timer);
        }
    }

    /// When `timer` is due, if it is set.
    pub(crate) fn get(&self, timer: Timer) -> Option<Time> {
        self.due.get(&timer).copied()
    }

    /// The first entry: the next deadline and what it is for.
    pub(crate) fn next(&self) -> Option<(Time, Timer)> {
        self.order.first().copied()
    }

    /// Removes and returns every timer due by `now`, the earliest first.
    pub(crate) fn take_due(&mut self, now: Time) -> Vec<Timer> {
        let mut due = Vec::new();
        while let Some(&(at, timer)) = self.order.first() {
            if at > now {
                break;
            }
            self.order.pop_first();
            self.due.remove(&timer);
            due.push(timer);
        }
        due
    }

    /// Every entry, by what it is for.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Timer, Time)> + '_ {
        self.due.iter().map(|(&timer, &at)| (timer, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_deadline_is_the_first_entry_and_a_key_is_set_once() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Restart, 50);
        t.set(Timer::Hello(ChildId(1)), 30);
        t.set(Timer::Recall(7), 40);
        assert_eq!(t.next(), Some((30, Timer::Hello(ChildId(1)))));
        // Set again: it moves, and is in the table once.
        t.set(Timer::Hello(ChildId(1)), 60);
        assert_eq!(t.next(), Some((40, Timer::Recall(7))));
        assert_eq!(t.iter().count(), 3);
        assert_eq!(t.cancel(Timer::Recall(7)), Some(40));
        assert_eq!(t.cancel(Timer::Recall(7)), None);
        assert_eq!(t.take_due(55), vec![Timer::Restart]);
        assert_eq!(t.get(Timer::Hello(ChildId(1))), Some(60));
        t.set(Timer::Kill(ChildId(2)), 60);
        t.cancel_child(ChildId(1));
        assert_eq!(t.take_due(u64::MAX), vec![Timer::Kill(ChildId(2))]);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn equal_times_come_out_in_key_order() {
        let mut t = Timers::default();
        t.set(Timer::Exec, 10);
        t.set(Timer::Kill(ChildId(3)), 10);
        t.set(Timer::Hello(ChildId(9)), 10);
        assert_eq!(
            t.take_due(10),
            vec![
                Timer::Hello(ChildId(9)),
                Timer::Kill(ChildId(3)),
                Timer::Exec
            ]
        );
    }
}
