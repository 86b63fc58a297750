//! Idle connections on their way from a child in lameduck to the serving child.
//!
//! The serving child says which listeners it adopts connections for
//! ([`ChildMsg::Adopts`], before it is ready). When it is promoted, the child it
//! replaces is told so ([`SupervisorMsg::Successor`], before `Lameduck`), and hands its
//! idle connections of those listeners over ([`ChildMsg::Hand`]); the shell holds their
//! fds by (sender, id). Each is forwarded to the serving child ([`Effect::Forward`]) if it
//! is ready and adopts that listener; if no child takes it, it goes back
//! ([`Effect::Return`]) and the sender serves it to the end. At most
//! [`Settings::move_cap`] wait for the serving child's answer at once: the others are
//! held, in order, and forwarded as answers make room (flow control: none goes back for
//! the count alone). Nor more than the serving child has fds for: when it is promoted,
//! and after a forward unless a measure of the last 250 ms left it plenty of room
//! (1,024 fds more than it has taken and has on its way), the shell measures how many
//! more it can open
//! ([`Effect::MeasureRoom`], [`Input::Room`](super::Input::Room)), and what follows
//! waits for room (or, if nothing is on its way to a child with no room at all, goes
//! back to be wound down by its sender). The serving child answers for each: taken
//! ([`ChildMsg::Adopted`], and the sender is told to close its copy) or declined
//! ([`ChildMsg::Declined`]: back to the sender).
//! One it has not answered for within [`Settings::take_ms`] (or a quarter of the
//! sender's lameduck time, if less) is recalled once: it declines it if it has not taken
//! it yet. That time counts from the receiver's last answer for any connection, so a
//! receiver that is slow but answering is never recalled from. A serving child that
//! exits sends back what it had not answered for.
//!
//! An upgrade hands the moves over with the state (state version 2, [`MovesRecord`]):
//! who adopts, what is on its way and what has moved, so the next image goes on
//! relaying them, and gives each receiver its full time to answer from the exec. Only
//! the connections held here are not carried (the shell holds their fds): the upgrade
//! re-executes once none is, bounded by [`Timer::Exec`], and gives back what is left.
//! A binary that reads only version 1 is handed nothing of the moves: toward it, the
//! upgrade re-executes only once the old children are gone (every connection they had
//! moved, or was served to the end) and no connection is on its way, bounded by the
//! last old child's lameduck deadline and then [`Settings::take_ms`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::control::protocol::{Parcel, SupervisorMsg};

use super::{ChildId, Effect, Life, Lifecycle, Machine, Time, Timer, Upgrade, UpgradeStep};

/// What the machine knows of connections moving between children.
#[derive(Debug, Default)]
pub(crate) struct Moving {
    /// The listeners each child adopts connections for.
    adopts: BTreeMap<ChildId, BTreeSet<String>>,
    /// The supervisor's id of the next connection forwarded.
    next: u64,
    /// Forwarded, by the supervisor's id, waiting for the receiver's answer.
    transit: BTreeMap<u64, Transit>,
    /// How many of `transit` each receiver has to answer for, kept with it (counted
    /// afresh for every batch, it made a large move quadratic).
    on_way: BTreeMap<ChildId, usize>,
    /// How many connections each child handed over were taken, for its exit's line.
    moved: BTreeMap<ChildId, u64>,
    /// When each receiver last answered for a connection forwarded to it.
    answered: BTreeMap<ChildId, Time>,
    /// How many more fds each receiver could open when it was last measured
    /// ([`Input::Room`](super::Input::Room)); unknown, no bound but the cap.
    room: BTreeMap<ChildId, Room>,
    /// Handed over while as many as the cap were on their way, by sender, in order:
    /// the shell holds their fds until they are forwarded or given back.
    held: VecDeque<(ChildId, Parcel)>,
}

/// What of [`Moving`] crosses an upgrade's exec (state version 2): who adopts, what
/// is on its way, and what has moved. What the shell holds fds of (the connections
/// held back) does not: the upgrade waits until none is held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MovesRecord {
    pub adopts: BTreeMap<ChildId, BTreeSet<String>>,
    pub next: u64,
    pub transit: BTreeMap<u64, Transit>,
    pub moved: BTreeMap<ChildId, u64>,
}

impl Moving {
    /// What of it crosses an exec.
    pub(crate) fn record(&self) -> MovesRecord {
        MovesRecord {
            adopts: self.adopts.clone(),
            next: self.next,
            transit: self.transit.clone(),
            moved: self.moved.clone(),
        }
    }

    /// As an exec left it: nothing held, no answer seen yet.
    pub(crate) fn from_record(record: MovesRecord) -> Moving {
        let mut moving = Moving {
            adopts: record.adopts,
            next: record.next,
            transit: record.transit,
            on_way: BTreeMap::new(),
            moved: record.moved,
            answered: BTreeMap::new(),
            room: BTreeMap::new(),
            held: VecDeque::new(),
        };
        moving.on_way = on_way_of(&moving.transit);
        moving
    }

    /// How many connections `to` has to answer for.
    fn on_way_to(&self, to: ChildId) -> usize {
        self.on_way.get(&to).copied().unwrap_or(0)
    }

    /// `transit` is on its way under `ours`.
    fn carry(&mut self, ours: u64, transit: Transit) {
        *self.on_way.entry(transit.to).or_default() += 1;
        self.transit.insert(ours, transit);
    }

    /// The receiver answered for `ours`.
    fn arrived(&mut self, ours: u64) -> Option<Transit> {
        let transit = self.transit.remove(&ours)?;
        if let Some(n) = self.on_way.get_mut(&transit.to) {
            *n -= 1;
            if *n == 0 {
                self.on_way.remove(&transit.to);
            }
        }
        Some(transit)
    }
}

/// How many connections in `transit` each receiver has to answer for.
fn on_way_of(transit: &BTreeMap<u64, Transit>) -> BTreeMap<ChildId, usize> {
    let mut on_way = BTreeMap::new();
    for transit in transit.values() {
        *on_way.entry(transit.to).or_default() += 1;
    }
    on_way
}

/// A receiver's room as last measured.
#[derive(Clone, Copy, Debug, Default)]
struct Room {
    /// How many more fds it could open then.
    free: u64,
    /// Connections it has taken since (each keeps an fd open in it, which that
    /// measure may not have seen).
    taken: u64,
    /// When it was measured.
    at: Time,
}

/// A receiver with at least this much room left, by the last measure and what it has
/// taken and has on its way since, is not measured again after each batch forwarded to
/// it: a measure reads two files of `/proc`, which in a move of ten thousand
/// connections cost more than the rest of the supervisor's work.
pub(crate) const ROOM_PLENTY: usize = 1024;

/// How long a measure showing plenty of room is trusted: the receiver opens fds of
/// its own meanwhile (the connections it accepts), which the count of what it took
/// does not see.
pub(crate) const ROOM_TRUSTED_MS: u64 = 250;

/// A connection forwarded to the serving child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transit {
    pub from: ChildId,
    /// The sender's id for it.
    pub id: u64,
    pub to: ChildId,
}

impl Moving {
    /// How many connections wait for the serving child's answer.
    pub(crate) fn in_transit(&self) -> usize {
        self.transit.len()
    }

    /// How many connections are held, waiting for room on the way.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether the count kept of connections on their way to each receiver is the
    /// count of `transit`.
    #[cfg(test)]
    pub(crate) fn on_way_counted(&self) -> bool {
        on_way_of(&self.transit) == self.on_way
    }

    /// Whether the connection forwarded under `ours` is on its way.
    #[cfg(test)]
    pub(crate) fn carries(&self, ours: u64) -> bool {
        self.transit.contains_key(&ours)
    }
}

/// Ids grouped by the child they are for, in order.
type ByChild = BTreeMap<ChildId, Vec<u64>>;

/// The fds a receiver keeps for its own use (accepting, logging, opening files) out of
/// its room when connections are forwarded to it.
const FD_RESERVE: u64 = 16;

impl Machine {
    /// The child that takes connections of `listener` now: the serving child, ready,
    /// if it adopts them.
    fn successor_for(&self, listener: &str) -> Option<ChildId> {
        let serving = self.state.children.get(&self.state.serving_id()?)?;
        let adopts = self.moves.adopts.get(&serving.id)?;
        (serving.is_ready() && adopts.contains(listener)).then_some(serving.id)
    }

    /// The message for a child about to wind down because `successor` replaces it.
    pub(super) fn successor_msg(&self, successor: ChildId) -> Option<SupervisorMsg> {
        let adopts = self.moves.adopts.get(&successor)?;
        (!adopts.is_empty()).then(|| SupervisorMsg::Successor {
            adopts: adopts.iter().cloned().collect(),
        })
    }

    /// The upgrade state version the binary being upgraded to reads, if an upgrade is
    /// about to re-execute.
    fn next_reads(&self) -> Option<u16> {
        match &self.state.lifecycle {
            Lifecycle::Upgrading(Upgrade {
                step: UpgradeStep::Exec,
                next_reads,
                ..
            }) => Some(*next_reads),
            _ => None,
        }
    }

    /// Re-executes the supervisor (an upgrade's last step) once the next image can go
    /// on with the moves ([`can_exec`](Self::can_exec)), or at the latest when a
    /// reload's hand-over would be over: the last old child's lameduck deadline, and
    /// then the time a receiver has to answer ([`Settings::take_ms`]).
    pub(super) fn exec_when_moved(&mut self, now: Time) {
        if self.can_exec() {
            return self.exec_now();
        }
        let last_kill = (self.state.children.keys())
            .filter_map(|id| self.state.timers.get(Timer::Kill(*id)))
            .max()
            .unwrap_or(now);
        let at = last_kill.max(now).saturating_add(self.settings.take_ms);
        self.state.timers.set(Timer::Exec, at);
    }

    /// Whether the next image can go on with the moves from here: with state version 2
    /// (which carries who adopts and what is on its way), once the shell holds no
    /// connection's fd; with version 1 (which carries nothing of them), once nothing
    /// moves any more: no child but the serving one (the old ones have handed over
    /// what they could, and exited), no connection on its way or held.
    fn can_exec(&self) -> bool {
        if self.next_reads() >= Some(2) {
            return self.moves.held.is_empty();
        }
        let serving = self.state.serving_id();
        self.moves.in_transit() == 0
            && self.moves.held.is_empty()
            && self.state.children.keys().all(|id| Some(*id) == serving)
    }

    /// Carries out the waiting re-execution if it is due by `now`, or the next image
    /// can go on with the moves.
    pub(super) fn exec_if_due(&mut self, now: Time) {
        let Some(at) = self.state.timers.get(Timer::Exec) else {
            return;
        };
        if self.can_exec() || at <= now {
            self.state.timers.cancel(Timer::Exec);
            self.exec_now();
        }
    }

    pub(super) fn exec_now(&mut self) {
        let Some(state_version) = self.next_reads() else {
            return;
        };
        self.return_held();
        if let Lifecycle::Upgrading(Upgrade { program, .. }) = &self.state.lifecycle {
            let program = program.clone();
            self.effects.push_back(Effect::Exec {
                program,
                state_version,
            });
        }
    }

    /// The children whose hand-overs are to wait in their channels for now: while an
    /// upgrade toward state version 2 waits for the connections held here to go on,
    /// every child but the serving one (the next image reads what they send
    /// meanwhile), so that what is held only shrinks.
    pub(crate) fn paused_senders(&self) -> BTreeSet<ChildId> {
        if self.next_reads() < Some(2) {
            return BTreeSet::new();
        }
        let serving = self.state.serving_id();
        (self.state.children.keys())
            .filter(|id| Some(**id) != serving)
            .copied()
            .collect()
    }

    /// Gives back every connection held here (the shell holds their fds, which no
    /// exec carries): the last thing before the supervisor re-executes, once what the
    /// children sent meanwhile has come in.
    pub(crate) fn return_held(&mut self) {
        let mut back = ByChild::new();
        for (from, parcel) in std::mem::take(&mut self.moves.held) {
            back.entry(from).or_default().push(parcel.id);
        }
        for (child, ids) in back {
            self.give_back(child, ids);
        }
    }

    /// After an exec: the connections the image before had forwarded get their time
    /// to be answered from now (their deadlines did not cross the exec).
    pub(super) fn recall_carried(&mut self, now: Time) {
        let due: Vec<(u64, Time)> = (self.moves.transit.iter())
            .map(|(&ours, transit)| (ours, now.saturating_add(self.take_ms(transit.from))))
            .collect();
        for (ours, at) in due {
            self.state.timers.set(Timer::Recall(ours), at);
        }
    }

    /// `child` adopts connections of `listener`. If it serves already, the children
    /// winding down after it learn so now.
    pub(super) fn on_adopts(&mut self, child: ChildId, listener: String) {
        self.moves
            .adopts
            .entry(child)
            .or_default()
            .insert(listener.clone());
        if self.successor_for(&listener) != Some(child) {
            return;
        }
        // Only a child winding down is in lameduck.
        let winding: Vec<ChildId> = self
            .children()
            .filter(|c| c.life == Life::Lameduck { welcomed: true })
            .map(|c| c.id)
            .collect();
        for id in winding {
            self.effects.push_back(Effect::Send {
                child: id,
                msg: SupervisorMsg::Successor {
                    adopts: vec![listener.clone()],
                },
            });
        }
    }

    /// `from` hands `parcels` over; the shell holds their fds. Each goes on to the
    /// serving child as soon as fewer than [`Settings::move_cap`] are on their way
    /// (held in order until then: flow control, never a refusal for the count alone),
    /// or back to `from` if no child takes it.
    pub(super) fn on_hand(&mut self, from: ChildId, parcels: Vec<Parcel>, now: Time) {
        self.moves
            .held
            .extend(parcels.into_iter().map(|parcel| (from, parcel)));
        self.forward_held(now);
    }

    /// How many more connections `to` can be sent now, by its room: the fds it could
    /// open when last measured, less a reserve for its own use, less those on their
    /// way to it and those it has taken since (some of which that measure may have
    /// counted already: the bound errs on the side of waiting). `None`: its room is not
    /// known.
    fn room_for(&self, to: ChildId, on_way: usize) -> Option<usize> {
        let room = self.moves.room.get(&to)?;
        let free = (room.free.saturating_sub(FD_RESERVE)).saturating_sub(room.taken);
        let free = usize::try_from(free).unwrap_or(usize::MAX);
        Some(free.saturating_sub(on_way))
    }

    /// Forwards the connections held, in order, while there is room on the way and in
    /// the receiver; gives back those no child takes any more, or that a receiver with
    /// nothing on its way has no room for at all (its sender winds them down).
    pub(super) fn forward_held(&mut self, now: Time) {
        let mut forward: BTreeMap<(ChildId, ChildId), Vec<(u64, Parcel)>> = BTreeMap::new();
        let mut back = ByChild::new();
        while let Some((from, parcel)) = self.moves.held.front() {
            let from = *from;
            if !self.state.children.contains_key(&from) {
                // Its sender is gone: the shell closed what it held of it.
                self.moves.held.pop_front();
                continue;
            }
            let to = self
                .successor_for(&parcel.listener)
                .filter(|&to| to != from);
            let Some(to) = to else {
                back.entry(from).or_default().push(parcel.id);
                self.moves.held.pop_front();
                continue;
            };
            if self.moves.in_transit() >= self.settings.move_cap {
                break;
            }
            let going = self.moves.on_way_to(to);
            match self.room_for(to, going) {
                Some(0) if going == 0 => {
                    back.entry(from).or_default().push(parcel.id);
                    self.moves.held.pop_front();
                    continue;
                }
                Some(0) => break,
                _ => {}
            }
            let take_ms = self.take_ms(from);
            let Some((_, parcel)) = self.moves.held.pop_front() else {
                break;
            };
            let ours = self.moves.next;
            self.moves.next += 1;
            self.moves.carry(
                ours,
                Transit {
                    from,
                    id: parcel.id,
                    to,
                },
            );
            let recall_at = now.saturating_add(take_ms);
            self.state.timers.set(Timer::Recall(ours), recall_at);
            let theirs = parcel.id;
            forward
                .entry((from, to))
                .or_default()
                .push((theirs, Parcel { id: ours, ..parcel }));
        }
        for (child, ids) in back {
            self.give_back(child, ids);
        }
        let receivers: BTreeSet<ChildId> = forward.keys().map(|(_, to)| *to).collect();
        for ((from, to), parcels) in forward {
            self.effects
                .push_back(Effect::Forward { from, to, parcels });
        }
        for child in receivers {
            if !self.room_is_plenty(child, now) {
                self.effects.push_back(Effect::MeasureRoom { child });
            }
        }
    }

    /// Whether `child`'s last measure, recent enough, left it plenty of room.
    fn room_is_plenty(&self, child: ChildId, now: Time) -> bool {
        let fresh = (self.moves.room.get(&child))
            .is_some_and(|room| now.saturating_sub(room.at) < ROOM_TRUSTED_MS);
        fresh
            && self
                .room_for(child, self.moves.on_way_to(child))
                .is_some_and(|free| free >= ROOM_PLENTY)
    }

    /// How many more connections the serving child has room for now, if its room is
    /// known.
    #[cfg(test)]
    pub(crate) fn serving_room(&self) -> Option<usize> {
        let serving = self.state.serving_id()?;
        self.room_for(serving, self.moves.on_way_to(serving))
    }

    /// The shell measured how many more fds `child` can open.
    pub(super) fn on_room(&mut self, child: ChildId, free: u64, now: Time) {
        if self.state.children.contains_key(&child) {
            let room = Room {
                free,
                taken: 0,
                at: now,
            };
            self.moves.room.insert(child, room);
        }
    }

    /// Connections `from` handed over that are not connections at all, or not of their
    /// listener: refused, with the reason, and given back (its copies are its own to
    /// close).
    pub(super) fn on_hand_refused(&mut self, from: ChildId, ids: Vec<u64>, reason: String) {
        let pid = self.state.children.get(&from).map_or(0, |c| c.pid);
        let n = ids.len();
        let what = if n == 1 { "connection" } else { "connections" };
        self.warn(format!(
            "refused {n} {what} that child pid {pid} handed over: {reason}"
        ));
        self.give_back(from, ids);
    }

    /// How long a receiver has to answer for a connection from `sender`: recalled
    /// then, in time for the sender to serve it to the end if it comes back, well
    /// within the sender's own lameduck time.
    pub(super) fn take_ms(&self, sender: ChildId) -> u64 {
        let lameduck_ms = (self.state.children.get(&sender)).map_or(0, |c| c.lameduck_ms);
        self.settings.take_ms.min(lameduck_ms / 4)
    }

    /// `to` answered for connections forwarded to it: `taken`, or declined. A receiver
    /// that answers is not stuck: what else it has to answer for gets its full time
    /// again from now (a recall is for a receiver that stopped answering, not for one
    /// that takes a thousand connections more slowly than they came).
    pub(super) fn on_answer(&mut self, to: ChildId, ids: Vec<u64>, taken: bool, now: Time) {
        let mut senders = ByChild::new();
        for ours in ids {
            let Some(transit) = self.moves.transit.get(&ours).copied() else {
                continue;
            };
            if transit.to != to {
                continue;
            }
            self.moves.arrived(ours);
            self.state.timers.cancel(Timer::Recall(ours));
            senders.entry(transit.from).or_default().push(transit.id);
        }
        self.moves.answered.insert(to, now);
        for (child, ids) in senders {
            if taken {
                *self.moves.moved.entry(child).or_default() += ids.len() as u64;
                if let Some(room) = self.moves.room.get_mut(&to) {
                    room.taken += ids.len() as u64;
                }
            }
            if taken {
                let n = ids.len() as u64;
                self.state.tally.moved += n;
                self.journal_moved(child, n);
                self.effects.push_back(Effect::Send {
                    child,
                    msg: SupervisorMsg::Taken(ids),
                });
            } else {
                self.give_back(child, ids);
            }
        }
    }

    /// Gives `child` back the connections it handed over with these ids, which it
    /// then serves to the end and closes.
    fn give_back(&mut self, child: ChildId, ids: Vec<u64>) {
        self.journal_closed(child, ids.len() as u64);
        self.effects.push_back(Effect::Return { child, ids });
    }

    /// Recalls these connections, whose [`Timer::Recall`] was due: one message to each
    /// receiver. One whose receiver has answered for another since it was forwarded
    /// gets its time again from that answer instead.
    pub(super) fn recall(&mut self, ids: Vec<u64>, now: Time) {
        let mut due = ByChild::new();
        for ours in ids {
            let Some(transit) = self.moves.transit.get(&ours).copied() else {
                continue;
            };
            let again = (self.moves.answered.get(&transit.to))
                .map(|at| at.saturating_add(self.take_ms(transit.from)))
                .filter(|at| *at > now);
            match again {
                Some(at) => self.state.timers.set(Timer::Recall(ours), at),
                None => due.entry(transit.to).or_default().push(ours),
            }
        }
        for (child, ids) in due {
            self.effects.push_back(Effect::Send {
                child,
                msg: SupervisorMsg::Recall(ids),
            });
        }
    }

    /// `child` exited: what it had not answered for goes back to the senders, and what
    /// it had handed over is forgotten (nobody is left to tell). How many of its
    /// connections moved, if any did.
    pub(super) fn forget_moves(&mut self, child: ChildId) -> Option<u64> {
        self.moves.adopts.remove(&child);
        self.moves.answered.remove(&child);
        self.moves.room.remove(&child);
        self.moves.held.retain(|(from, _)| *from != child);
        let mut back = ByChild::new();
        let timers = &mut self.state.timers;
        self.moves.transit.retain(|&ours, t| {
            if t.to == child && t.from != child {
                back.entry(t.from).or_default().push(t.id);
            }
            let keep = t.to != child && t.from != child;
            if !keep {
                timers.cancel(Timer::Recall(ours));
            }
            keep
        });
        self.moves.on_way = on_way_of(&self.moves.transit);
        for (child, ids) in back {
            self.give_back(child, ids);
        }
        self.moves.moved.remove(&child)
    }
}
