//! Program state on its way from a child to the new child that replaces it: state
//! transfer (protocol 6).
//!
//! A child offers its state once its program waits for requests
//! ([`ChildMsg::OffersState`]). The new child of a reload asks before it is ready
//! ([`ChildMsg::StateAsk`]); if the child it replaces serves and offers, that one is
//! asked ([`SupervisorMsg::StateWanted`]) and the answer is due within the asker's
//! `state_timeout` ([`Timer::StateAnswer`]); otherwise the asker is told at once that
//! there is none ([`SupervisorMsg::NoState`]). The answer, a head and the fds that
//! follow it ([`ChildMsg::StateGive`], [`ChildMsg::StateFds`]), is relayed message by
//! message as it comes ([`Effect::RelayState`]): the shell holds a message's fds only
//! from its arrival to its relay, and never reads the bytes (they are in a sealed file
//! whose fd travels with the head). What is not to be relayed is closed
//! ([`Effect::DropState`]): each message that carries fds gets exactly one of the two.
//!
//! It is transactional: the giver keeps its state until the transfer is over, and is
//! told how it ended ([`SupervisorMsg::StateDone`]): committed once the asker is the
//! serving child with no probation left (the reload succeeded), not committed if the
//! asker fails, winds down or gives up first, so the next reload's new child asks again
//! and loses nothing. After the asker is ready, the giver, standing by or in lameduck,
//! may give one later snapshot (`update`), relayed to the asker alone, once.
//!
//! A state that nobody asked for (a forged message, a child asked by nobody, an answer
//! after the timeout) is refused: closed, logged, and its giver told it is not
//! committed. Transfers are not part of the state an upgrade hands over: an upgrade
//! re-executes after its reload, when every transfer of it has ended but the one
//! later snapshot, which a supervisor's next image refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::control::protocol::{
    ChildMsg, MAX_STATE_BYTES, MAX_STATE_FDS, StateHeader, SupervisorMsg,
};

use super::{ChildId, Effect, Life, Lifecycle, Machine, Slot, Time, Timer, human_duration};

/// The longest a new child may wait for a state: its `state_timeout` is at most its
/// `ready_timeout`, itself capped at this.
const MAX_ANSWER_MS: u64 = super::MAX_CHILD_WAIT_MS;

/// What the machine knows of the states on their way.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    /// The children that offer their state.
    offers: BTreeSet<ChildId>,
    /// Each transfer, by the child that asked.
    asks: BTreeMap<ChildId, Transfer>,
    /// The serving child and the bytes it was given by a committed transfer, for
    /// `status`.
    last: Option<(ChildId, u64)>,
}

/// One state on its way, from the child that gives it to the one that asked.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Transfer {
    from: ChildId,
    phase: Phase,
    /// The bytes and named fds given, once the head came.
    size: u64,
    fds: u32,
    /// Whether the one later snapshot was given.
    updated: bool,
    /// Whether the reload succeeded and the giver was told so.
    committed: bool,
    /// How long the asker waits for the answer.
    timeout_ms: u64,
}

/// Where a transfer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The giver was asked; its answer is due ([`Timer::StateAnswer`]).
    Asked,
    /// The head was relayed; `left` named fds are still to come.
    Relaying { left: u32 },
    /// Relayed whole: it waits for the end of the reload, and once the asker is
    /// ready the giver may give one later snapshot.
    Given,
    /// The later snapshot's head was relayed; `left` named fds are still to come.
    Updating { left: u32 },
    /// Given up halfway: the `left` named fds still to come are closed as they come.
    Discarding { left: u32 },
}

impl Transfers {
    /// The bytes of state the serving child `serving` was given, if a committed
    /// transfer gave it its state.
    pub(crate) fn last_bytes(&self, serving: Option<ChildId>) -> Option<u64> {
        self.last
            .filter(|(child, _)| Some(*child) == serving)
            .map(|(_, bytes)| bytes)
    }

    /// Whether `child`'s ask waits for its answer (its [`Timer::StateAnswer`] is due).
    #[cfg(test)]
    pub(crate) fn awaits(&self, child: ChildId) -> bool {
        self.asks.get(&child).map(|t| t.phase) == Some(Phase::Asked)
    }

    /// The asker of the transfer that `from` gives, if there is one.
    fn giving(&self, from: ChildId) -> Option<ChildId> {
        self.asks
            .iter()
            .find(|(_, t)| t.from == from)
            .map(|(asker, _)| *asker)
    }
}

/// Why a head of a state is refused, if it is: past the limits.
fn refusal(head: &StateHeader) -> Option<String> {
    if head.size > MAX_STATE_BYTES {
        return Some(format!(
            "the state is {} bytes; at most {MAX_STATE_BYTES}",
            head.size
        ));
    }
    if head.fds as usize > MAX_STATE_FDS {
        return Some(format!(
            "the state carries {} fds; at most {MAX_STATE_FDS}",
            head.fds
        ));
    }
    None
}

impl Machine {
    /// A state-transfer message from `id` (protocol 6).
    pub(super) fn on_state_msg(&mut self, id: ChildId, msg: ChildMsg, now: Time) {
        match msg {
            ChildMsg::OffersState => {
                self.transfers.offers.insert(id);
            }
            ChildMsg::StateAsk { timeout_ms } => self.on_state_ask(id, timeout_ms, now),
            ChildMsg::StateGive(head) => self.on_state_give(id, head),
            ChildMsg::StateFds(names) => self.on_state_fds(id, names),
            ChildMsg::StateNone { reason } => self.on_state_none(id, reason),
            other => self.kill(id, format!("it sent an unexpected message: {other:?}")),
        }
    }

    /// The fds of a state message from `id` were cut short: this process ran out of
    /// fds. Those that came are closed, and the transfer ends, not committed, with
    /// an error to both.
    pub(super) fn on_state_cut(&mut self, id: ChildId, msg: ChildMsg) {
        self.effects.push_back(Effect::DropState { from: id });
        let Some(asker) = self.transfers.giving(id) else {
            return;
        };
        let Some(t) = self.transfers.asks.get(&asker).cloned() else {
            return;
        };
        let coming = match (&msg, t.phase) {
            (ChildMsg::StateGive(head), Phase::Asked | Phase::Given) => head.fds,
            (ChildMsg::StateFds(names), Phase::Relaying { left } | Phase::Updating { left }) => {
                left.saturating_sub(u32::try_from(names.len()).unwrap_or(u32::MAX))
            }
            // Cut short, and not wanted anyway: dropped above.
            _ => return,
        };
        let reason =
            "the supervisor is out of fds (its fd limit): the state's fds could not be relayed";
        self.warn(format!("state transfer: {reason}"));
        self.state.timers.cancel(Timer::StateAnswer(asker));
        self.send(
            asker,
            SupervisorMsg::NoState {
                reason: Some(reason.to_string()),
            },
        );
        self.send(id, SupervisorMsg::StateDone { committed: false });
        self.discard(asker, coming);
    }

    fn on_state_ask(&mut self, asker: ChildId, timeout_ms: u64, now: Time) {
        if self.transfers.asks.contains_key(&asker) {
            let reason = "it asked for the state twice".to_string();
            return self.send(
                asker,
                SupervisorMsg::NoState {
                    reason: Some(reason),
                },
            );
        }
        let Some(asking) = self.state.children.get(&asker) else {
            return;
        };
        if asking.life != Life::AwaitingReady {
            // Only a new child that calls ready() takes a state, before it is ready.
            let reason = match asking.life {
                Life::Ready | Life::Standby => "it asked for the state after it was ready",
                _ => "it asked for the state before its hello or while winding down",
            };
            let reason = Some(reason.to_string());
            return self.send(asker, SupervisorMsg::NoState { reason });
        }
        let giver = match &self.state.lifecycle {
            Lifecycle::Reloading(reload) if self.state.incoming_id() == Some(asker) => {
                match reload.old {
                    Slot::Child(old) => Some(old),
                    _ => None,
                }
            }
            _ => None,
        };
        let giver = giver.filter(|old| {
            self.transfers.offers.contains(old)
                && self.state.children.get(old).is_some_and(|c| c.is_ready())
        });
        let Some(giver) = giver else {
            return self.send(asker, SupervisorMsg::NoState { reason: None });
        };
        let successor = asking.pid;
        let timeout_ms = timeout_ms.min(MAX_ANSWER_MS);
        self.transfers.asks.insert(
            asker,
            Transfer {
                from: giver,
                phase: Phase::Asked,
                size: 0,
                fds: 0,
                updated: false,
                committed: false,
                timeout_ms,
            },
        );
        let due = now.saturating_add(timeout_ms);
        self.state.timers.set(Timer::StateAnswer(asker), due);
        self.send(giver, SupervisorMsg::StateWanted { successor });
    }

    fn on_state_give(&mut self, from: ChildId, head: StateHeader) {
        let asker = self.transfers.giving(from);
        let transfer = asker.and_then(|a| self.transfers.asks.get(&a).cloned());
        let (Some(asker), Some(t)) = (asker, transfer) else {
            return self.refuse_state(from, "it gave a state nobody asked for");
        };
        let may_update = t.phase == Phase::Given && (t.committed || self.is_ready(asker));
        let giver_winding = self
            .state
            .children
            .get(&from)
            .is_some_and(|c| matches!(c.life, Life::Standby | Life::Lameduck { .. }));
        let next = match (head.update, t.phase) {
            (false, Phase::Asked) => {
                self.state.timers.cancel(Timer::StateAnswer(asker));
                if let Some(why) = refusal(&head) {
                    self.effects.push_back(Effect::DropState { from });
                    self.send(asker, SupervisorMsg::NoState { reason: Some(why) });
                    self.send(from, SupervisorMsg::StateDone { committed: false });
                    return self.discard(asker, head.fds);
                }
                match head.fds {
                    0 => Phase::Given,
                    left => Phase::Relaying { left },
                }
            }
            (true, _) if may_update && !t.updated && giver_winding && refusal(&head).is_none() => {
                match head.fds {
                    0 => Phase::Given,
                    left => Phase::Updating { left },
                }
            }
            // Refused, and not a word to the giver: its transfer goes on, and its
            // outcome is still to come.
            (true, _) => {
                self.effects.push_back(Effect::DropState { from });
                let pid = self.state.children.get(&from).map_or(0, |c| c.pid);
                return self.warn(format!(
                    "state transfer refused: child pid {pid}: it gave a later snapshot of its state that is not wanted (one, after its successor is ready, while it stands by or winds down)"
                ));
            }
            (false, _) => return self.refuse_state(from, "it gave its state twice"),
        };
        let pid = self.state.children.get(&from).map_or(0, |c| c.pid);
        if let Some(t) = self.transfers.asks.get_mut(&asker) {
            t.phase = next;
            if head.update {
                t.updated = true;
            } else {
                (t.size, t.fds) = (head.size, head.fds);
            }
        }
        self.effects.push_back(Effect::RelayState {
            from,
            to: asker,
            msg: SupervisorMsg::State(StateHeader { from: pid, ..head }),
        });
    }

    fn on_state_fds(&mut self, from: ChildId, names: Vec<String>) {
        let count = u32::try_from(names.len()).unwrap_or(u32::MAX);
        let asker = self.transfers.giving(from);
        let phase = asker.and_then(|a| self.transfers.asks.get(&a).map(|t| t.phase));
        let (Some(asker), Some(phase)) = (asker, phase) else {
            return self.refuse_state(from, "it gave fds of a state nobody asked for");
        };
        let (left, updating) = match phase {
            Phase::Relaying { left } => (left, false),
            Phase::Updating { left } => (left, true),
            Phase::Discarding { left } => {
                self.effects.push_back(Effect::DropState { from });
                let left = left.saturating_sub(count);
                if left == 0 {
                    self.transfers.asks.remove(&asker);
                } else if let Some(t) = self.transfers.asks.get_mut(&asker) {
                    t.phase = Phase::Discarding { left };
                }
                return;
            }
            Phase::Asked | Phase::Given => {
                return self
                    .refuse_state(from, "it gave fds of its state after their head said none");
            }
        };
        if count == 0 || count > left {
            self.effects.push_back(Effect::DropState { from });
            let why = format!("it gave {count} fds of its state where {left} were still to come");
            self.warn(format!("state transfer refused: {why}"));
            self.send(asker, SupervisorMsg::NoState { reason: Some(why) });
            self.send(from, SupervisorMsg::StateDone { committed: false });
            self.transfers.asks.remove(&asker);
            return;
        }
        let next = match (left - count, updating) {
            (0, _) => Phase::Given,
            (left, false) => Phase::Relaying { left },
            (left, true) => Phase::Updating { left },
        };
        if let Some(t) = self.transfers.asks.get_mut(&asker) {
            t.phase = next;
        }
        self.effects.push_back(Effect::RelayState {
            from,
            to: asker,
            msg: SupervisorMsg::StateFds(names),
        });
    }

    fn on_state_none(&mut self, from: ChildId, reason: Option<String>) {
        let Some(asker) = self.transfers.giving(from) else {
            return;
        };
        if self.transfers.asks.get(&asker).map(|t| t.phase) != Some(Phase::Asked) {
            return;
        }
        self.state.timers.cancel(Timer::StateAnswer(asker));
        self.transfers.asks.remove(&asker);
        let reason = reason.map(|r| r.chars().take(super::MAX_REASON).collect());
        self.send(asker, SupervisorMsg::NoState { reason });
    }

    /// `asker`'s answer was due and did not come: it is told why, and the giver that
    /// its request is void.
    pub(super) fn state_answer_late(&mut self, asker: ChildId) {
        let Some(t) = self.transfers.asks.get(&asker).cloned() else {
            return;
        };
        if t.phase != Phase::Asked {
            return;
        }
        self.transfers.asks.remove(&asker);
        let pid = self.state.children.get(&t.from).map_or(0, |c| c.pid);
        let within = human_duration(Duration::from_millis(t.timeout_ms));
        let reason =
            format!("the process it replaces, pid {pid}, did not give its state within {within}");
        self.warn(format!("state transfer: {reason}"));
        self.send(
            asker,
            SupervisorMsg::NoState {
                reason: Some(reason),
            },
        );
        self.send(t.from, SupervisorMsg::StateDone { committed: false });
    }

    /// Ends the transfers that the last input decided: committed where the asker
    /// serves with no probation left, void where it is gone or winds down, cut where
    /// the giver is gone. Called after every input and deadline.
    pub(super) fn settle_transfers(&mut self) {
        self.transfers
            .offers
            .retain(|id| self.state.children.contains_key(id));
        let on_trial = match &self.state.lifecycle {
            Lifecycle::Probation(trial) => Some(trial.new),
            _ => None,
        };
        let serving = self.state.serving_id();
        let asks: Vec<(ChildId, Transfer)> = self
            .transfers
            .asks
            .iter()
            .map(|(a, t)| (*a, t.clone()))
            .collect();
        for (asker, t) in asks {
            let asker_life = self.state.children.get(&asker).map(|c| c.life);
            let giver_pid = self.state.children.get(&t.from).map(|c| c.pid);
            let asker_lost = matches!(
                asker_life,
                None | Some(Life::Lameduck { .. } | Life::Killed { .. })
            );
            if asker_lost {
                self.state.timers.cancel(Timer::StateAnswer(asker));
                if !t.committed && !matches!(t.phase, Phase::Discarding { .. }) {
                    self.send(t.from, SupervisorMsg::StateDone { committed: false });
                }
                match t.phase {
                    Phase::Relaying { left }
                    | Phase::Updating { left }
                    | Phase::Discarding { left }
                        if giver_pid.is_some() =>
                    {
                        self.discard(asker, left)
                    }
                    _ => {
                        self.transfers.asks.remove(&asker);
                    }
                }
                continue;
            }
            if giver_pid.is_none() {
                match t.phase {
                    Phase::Asked | Phase::Relaying { .. } | Phase::Updating { .. } => {
                        self.state.timers.cancel(Timer::StateAnswer(asker));
                        let reason = "the process it replaces exited before it had given its state";
                        let reason = Some(reason.to_string());
                        self.send(asker, SupervisorMsg::NoState { reason });
                    }
                    Phase::Given | Phase::Discarding { .. } => {}
                }
                self.transfers.asks.remove(&asker);
                continue;
            }
            let serves = serving == Some(asker) && on_trial != Some(asker);
            if !serves || t.committed {
                continue;
            }
            match t.phase {
                Phase::Given | Phase::Updating { .. } => {
                    self.send(t.from, SupervisorMsg::StateDone { committed: true });
                    self.transfers.last = Some((asker, t.size));
                    self.journal_state(asker, t.size, t.fds);
                    if let Some(t) = self.transfers.asks.get_mut(&asker) {
                        t.committed = true;
                    }
                }
                // Ready without waiting for the state: the transfer is void.
                Phase::Asked | Phase::Relaying { .. } => {
                    self.state.timers.cancel(Timer::StateAnswer(asker));
                    self.send(t.from, SupervisorMsg::StateDone { committed: false });
                    match t.phase {
                        Phase::Relaying { left } => self.discard(asker, left),
                        _ => {
                            self.transfers.asks.remove(&asker);
                        }
                    }
                }
                Phase::Discarding { .. } => {}
            }
        }
    }

    /// The transfer to `asker` is given up; the `left` named fds still to come are
    /// closed as they come.
    fn discard(&mut self, asker: ChildId, left: u32) {
        if left == 0 {
            self.transfers.asks.remove(&asker);
        } else if let Some(t) = self.transfers.asks.get_mut(&asker) {
            t.phase = Phase::Discarding { left };
        }
    }

    /// A state message of `from` that no transfer wants: its fds are closed, it is
    /// logged, and the giver told that nothing was committed.
    fn refuse_state(&mut self, from: ChildId, why: &str) {
        self.effects.push_back(Effect::DropState { from });
        let pid = self.state.children.get(&from).map_or(0, |c| c.pid);
        self.warn(format!("state transfer refused: child pid {pid}: {why}"));
        self.send(from, SupervisorMsg::StateDone { committed: false });
    }

    fn send(&mut self, child: ChildId, msg: SupervisorMsg) {
        self.effects.push_back(Effect::Send { child, msg });
    }

    fn is_ready(&self, child: ChildId) -> bool {
        self.state
            .children
            .get(&child)
            .is_some_and(|c| c.is_ready())
    }
}
