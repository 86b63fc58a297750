//! A reload's probation: the new child serves, the old one stands by (warm) or has
//! wound down, and the reload's verdict waits until the probation ends.
//!
//! It passes when [`Timer::Probation`] is due or the operator runs `promote`: the old
//! child winds down and the reload counts. It fails when the new child exits, says it
//! is unhealthy, or the operator runs `rollback`: the old child standing by resumes at
//! once and the new one winds down, handing its idle connections back (warm); with no
//! child standing by, the previous binary starts again from its held fd, as a reload
//! gated on readiness while the new child serves on if it can (cold). With
//! `fallback = false` and no child standing by there is nothing to go back to: a live
//! new child serves on, and a dead one is a child exit as any other.

use std::time::{Duration, SystemTime};

use crate::control::protocol::{Response, SupervisorMsg, seconds};

use crate::supervisor::state::ProgramRecord;

use crate::control::history::{Kind, Outcome};

use super::journal::Part;
use super::{
    Back, Child, ChildId, ClientId, Cold, Effect, Exit, Gone, Incoming, Life, Lifecycle, Machine,
    Notice, Reload, ReloadKind, Reloaded, Slot, Time, Timer, Trial,
};

/// The answer to `promote` or `rollback` with no probation under way.
fn no_probation() -> Response {
    Response::Refused {
        reason: "no reload is on probation".to_string(),
    }
}

impl Machine {
    /// The new child of `reload` is ready and declares a probation: it serves, the old
    /// one stands by if both can (else it winds down), and the client is told.
    pub(super) fn begin_probation(&mut self, reload: Reload, new: &Child, now: Time) {
        let ms = now.saturating_sub(reload.since);
        let previous = self.state.previous.clone();
        let listeners = self.state.listeners.clone();
        let (old_pid, back) = match &reload.old {
            Slot::Child(old) => match self.state.children.get(old).cloned() {
                Some(c) => {
                    self.state.previous = Some(c.program.clone());
                    // Standing by or winding down, it hands its idle connections over.
                    self.journal_link(*old, Part::Old, None);
                    self.tell_successor(*old, new.id);
                    if new.probation.standby && c.stands_by && c.is_ready() {
                        self.set_life(*old, Life::Standby, None);
                        self.effects.push_back(Effect::Send {
                            child: *old,
                            msg: SupervisorMsg::Standby,
                        });
                        (Some(c.pid), Back::Standby(*old))
                    } else {
                        self.retire(*old, now);
                        (Some(c.pid), Back::Cold(c.program))
                    }
                }
                None => return,
            },
            other => {
                let Some(program) = other.program().cloned() else {
                    return;
                };
                self.state.previous = Some(program.clone());
                (None, Back::Cold(program))
            }
        };
        self.state.listeners = new.listeners.clone();
        let probation_ms = new.probation.ms;
        self.state
            .timers
            .set(Timer::Probation, now.saturating_add(probation_ms));
        let standing = match back {
            Back::Standby(_) => old_pid.map(|p| format!("; pid {p} stands by")),
            Back::Cold(_) => None,
        };
        self.state.lifecycle = Lifecycle::Probation(Trial {
            waiter: reload.waiter,
            kind: reload.kind,
            new: new.id,
            old_pid,
            ms,
            began: now,
            back,
            previous,
            listeners,
        });
        let old_shown = old_pid.map_or_else(|| "none".to_string(), |p| p.to_string());
        let what = match reload.kind {
            ReloadKind::Upgrade => "upgrading: child",
            _ => "reloaded:",
        };
        self.log(format!(
            "{what} pid {old_shown} -> {} in {ms} ms; on probation for {}{}",
            new.pid,
            seconds(probation_ms),
            standing.unwrap_or_default()
        ));
        self.notify(Notice::Extend { ms: probation_ms });
        self.effects.push_back(Effect::Send {
            child: new.id,
            msg: SupervisorMsg::OnProbation { ms: probation_ms },
        });
        if let Some(client) = reload.waiter {
            self.effects.push_back(Effect::Interim {
                client,
                response: Response::OnProbation {
                    old_pid,
                    new_pid: new.pid,
                    ms,
                    ends_ms: probation_ms,
                },
            });
        }
        // It said it was not well before it was ready.
        if let Some(why) = new.unwell.clone() {
            self.fail_probation(why, None, None, now);
        }
    }

    /// The probation passed (its time is up, or `by` ran `promote`): the old child
    /// winds down, and the reload is done.
    pub(super) fn pass_probation(&mut self, by: Option<ClientId>, now: Time) {
        let Lifecycle::Probation(trial) = &self.state.lifecycle else {
            return;
        };
        let trial = trial.clone();
        self.state.timers.cancel(Timer::Probation);
        if let Back::Standby(old) = trial.back {
            self.retire(old, now);
        }
        let pid = self.state.children.get(&trial.new).map_or(0, |c| c.pid);
        let after_ms = now.saturating_sub(trial.began);
        let name = self.settings.name.clone();
        self.log(format!(
            "probation passed after {}: pid {pid} serves {name}",
            seconds(after_ms)
        ));
        if let Some(client) = by {
            let standby = match trial.back {
                Back::Standby(old) => self.state.children.get(&old).map(|c| c.pid),
                Back::Cold(_) => None,
            };
            let why = Some(format!("promoted after {}", seconds(after_ms)));
            let pids = (standby, Some(pid));
            self.journal_event(
                Kind::Promote,
                pids,
                None,
                why,
                Some(Outcome::Succeeded),
                now,
            );
            self.answer(client, Response::Promoted { pid, after_ms });
        }
        let done = Reloaded {
            waiter: trial.waiter,
            kind: trial.kind,
            new: trial.new,
            old_pid: trial.old_pid,
            ms: trial.ms,
            build_pending: false,
        };
        self.reloaded(done, None, now);
    }

    /// The probation failed, for `why`: back to the old child (warm) or the previous
    /// binary (cold). `exited`: the new child, if it is gone.
    fn fail_probation(
        &mut self,
        why: String,
        by: Option<ClientId>,
        exited: Option<(Child, Exit)>,
        now: Time,
    ) {
        let Lifecycle::Probation(trial) = &self.state.lifecycle else {
            return;
        };
        let trial = trial.clone();
        self.state.timers.cancel(Timer::Probation);
        let after_ms = now.saturating_sub(trial.began);
        let after = seconds(after_ms);
        let new_pid = self.state.children.get(&trial.new).map(|c| c.pid);
        let new_pid = new_pid.or(exited.as_ref().map(|(c, _)| c.pid));
        if let Back::Standby(old) = trial.back {
            if let Some(old) = self.state.children.get(&old).cloned() {
                let (old, old_pid) = (old.id, old.pid);
                self.state.failures += 1;
                let path = self
                    .state
                    .children
                    .get(&old)
                    .map(|c| c.program.path.display().to_string());
                let seq =
                    self.journal_rolled_back(&trial, &why, (new_pid, Some(old_pid)), path, now);
                self.set_life(old, Life::Ready, None);
                self.effects.push_back(Effect::Send {
                    child: old,
                    msg: SupervisorMsg::Resume,
                });
                self.state.lifecycle = Lifecycle::Serving { child: old };
                self.state.previous = trial.previous;
                self.state.listeners = trial.listeners;
                if exited.is_none() {
                    // It hands its idle connections back.
                    self.journal_link(trial.new, Part::Back, Some(seq));
                    self.mark_rolled_back(trial.new);
                    self.tell_successor(trial.new, old);
                    self.retire(trial.new, now);
                }
                let reason = format!(
                    "rolled back after {after} of probation (warm): {why}; pid {old_pid} serves again"
                );
                return self.rolled_back(trial.waiter, by, reason, old_pid);
            }
        }
        let program = match &trial.back {
            Back::Cold(program) => Some(program.clone()),
            Back::Standby(_) => self.state.previous.clone(),
        };
        let program = program.filter(|_| self.settings.fallback);
        let Some(program) = program else {
            return self.nothing_to_roll_back_to(trial, why, after, by, exited, now);
        };
        self.state.failures += 1;
        let path = Some(program.path.display().to_string());
        let seq = self.journal_rolled_back(&trial, &why, (new_pid, None), path, now);
        // Under way until the previous binary's child is ready.
        self.state.journal.under_way = Some(seq);
        let old = match exited {
            None => {
                // It serves until the rollback's child is ready, then winds down.
                self.mark_rolled_back(trial.new);
                Slot::Child(trial.new)
            }
            Some((child, exit)) => Slot::Exited {
                program: child.program,
                pid: child.pid,
                exit,
                // No fallback of its own: the rollback is its fallback.
                was_ready: false,
            },
        };
        self.warn(format!(
            "probation failed after {after}: {why}; rolling back to {} (cold)",
            program.path.display()
        ));
        self.state.lifecycle = Lifecycle::Reloading(Reload {
            waiter: trial.waiter,
            since: now,
            kind: ReloadKind::Rollback,
            old,
            incoming: Incoming::Preparing,
            queued: Vec::new(),
            build_pending: false,
            rollback: Some(Cold {
                why,
                after_ms,
                by,
                previous: trial.previous,
            }),
        });
        self.notify(Notice::Reloading);
        self.start_incoming(program, trial.listeners, now);
    }

    /// The reload on probation, `trial`, is rolled back for `why`: it says so, and the
    /// rollback (from the new child's pid to the one serving again, `pids`, with the
    /// binary that serves again, `path`) is an event of its own, whose number this is.
    fn journal_rolled_back(
        &mut self,
        trial: &Trial,
        why: &str,
        pids: (Option<u32>, Option<u32>),
        path: Option<String>,
        now: Time,
    ) -> u64 {
        self.state.tally.reloads_rolled_back += 1;
        let reason = Some(why.to_string());
        self.journal_end(Outcome::RolledBack, reason.clone(), Some(trial.ms), now);
        // Warm, it is done at once; cold, when the previous binary is ready.
        let outcome = pids.1.map(|_| Outcome::Succeeded);
        self.journal_event(Kind::Rollback, pids, path, reason, outcome, now)
    }

    /// `child`, if it is the one standing by, is no longer there to go back to (it
    /// exited, or was killed): a rollback would start `program` again, cold.
    pub(super) fn standby_lost(&mut self, child: ChildId, program: &ProgramRecord) {
        if let Lifecycle::Probation(trial) = &mut self.state.lifecycle {
            if matches!(trial.back, Back::Standby(old) if old == child) {
                trial.back = Back::Cold(program.clone());
            }
        }
    }

    /// `child` failed its probation and is to wind down: its exit's line says so.
    fn mark_rolled_back(&mut self, child: ChildId) {
        if let Some(c) = self.state.children.get_mut(&child) {
            c.rolled_back = true;
        }
    }

    /// A failed probation with no child standing by and fallback off: the new child
    /// serves on if it is alive; if it is gone, it is a child exit as any other.
    fn nothing_to_roll_back_to(
        &mut self,
        trial: Trial,
        why: String,
        after: String,
        by: Option<ClientId>,
        exited: Option<(Child, Exit)>,
        now: Time,
    ) {
        self.state.lifecycle = Lifecycle::Serving { child: trial.new };
        let mut reason = format!(
            "probation failed after {after}: {why}; nothing to roll back to (fallback = false)"
        );
        if exited.is_none() {
            self.state.failures += 1;
            let pid = self.state.children.get(&trial.new).map_or(0, |c| c.pid);
            reason.push_str(&format!(": pid {pid} serves on"));
        }
        self.state.tally.reloads_failed += 1;
        self.journal_end(Outcome::Failed, Some(reason.clone()), Some(trial.ms), now);
        self.warn(format!("reload failed: {reason}"));
        for client in trial.waiter.into_iter().chain(by) {
            let reason = reason.clone();
            self.answer(client, Response::Failed { reason });
        }
        match exited {
            None => {
                let serving = self.serving();
                self.notify(Notice::Ready(serving));
            }
            // (A failed exit counts as a failure there.)
            Some((child, exit)) => {
                match self.child_gone(child.program, child.pid, exit, false, now) {
                    Gone::Then(slot) => self.settle(slot, now),
                    Gone::Stop(code) => self.stop_now(code, now),
                }
            }
        }
    }

    /// The old child serves again: the reload's client hears why (`reason`), and the
    /// one that ran `rollback`, if any, which child serves.
    fn rolled_back(
        &mut self,
        waiter: Option<ClientId>,
        by: Option<ClientId>,
        reason: String,
        pid: u32,
    ) {
        self.warn(format!("reload failed: {reason}"));
        let serving = self.serving();
        self.notify(Notice::Ready(serving));
        if let Some(client) = waiter {
            self.answer(client, Response::Failed { reason });
        }
        if let Some(client) = by {
            self.answer(client, Response::RolledBack { pid });
        }
    }

    /// A cold rollback's child, `new`, is ready and serves (the promotion has wound the
    /// failed child down).
    pub(super) fn rolled_back_cold(&mut self, cold: Cold, waiter: Option<ClientId>, new: &Child) {
        self.state.previous = cold.previous;
        let reason = format!(
            "rolled back after {} of probation (cold): {}; pid {} serves again",
            seconds(cold.after_ms),
            cold.why,
            new.pid
        );
        self.rolled_back(waiter, cold.by, reason, new.pid);
    }

    /// What a failed cold rollback tells its clients, besides the reload's own failure.
    /// The child that failed its probation (`old`, if it is alive) serves on: it is not
    /// rolled back after all.
    pub(super) fn cold_rollback_failed(&mut self, cold: &Cold, old: &Slot, reason: &str) -> String {
        if let Slot::Child(id) = old {
            if let Some(child) = self.state.children.get_mut(id) {
                child.rolled_back = false;
            }
        }
        let reason = format!(
            "probation failed after {}: {}; the rollback to the previous binary failed too: {reason}",
            seconds(cold.after_ms),
            cold.why
        );
        if let Some(client) = cold.by {
            let reason = reason.clone();
            self.answer(client, Response::Failed { reason });
        }
        reason
    }

    /// The child on probation is gone.
    pub(super) fn probation_child_exited(&mut self, child: Child, exit: Exit, now: Time) {
        let why = format!("new child pid {} {}", child.pid, exit.how_it_ended());
        self.fail_probation(why, None, Some((child, exit)), now);
    }

    /// The old child standing by is gone: the probation goes on, and a rollback would
    /// be cold.
    pub(super) fn standby_exited(&mut self, child: &Child, exit: &Exit) {
        self.standby_lost(child.id, &child.program);
        let then = if self.settings.fallback {
            format!(
                "a rollback would start {} again (cold)",
                child.program.path.display()
            )
        } else {
            "a rollback has nothing to go back to (fallback = false)".to_string()
        };
        self.warn(format!(
            "old child pid {} {} while standing by; the probation goes on, and {then}",
            child.pid,
            exit.describe()
        ));
    }

    /// A child says it is not well (`why`: `unhealthy: REASON`, or its 5xx share): the
    /// probation fails if it is the child on probation; otherwise it is only said.
    pub(super) fn on_unhealthy(&mut self, id: ChildId, why: String, now: Time) {
        match &self.state.lifecycle {
            Lifecycle::Probation(trial) if trial.new == id => {
                self.fail_probation(why, None, None, now);
            }
            // Before its probation: it fails it as soon as it begins.
            _ if self.state.incoming_id() == Some(id) => {
                let Some(child) = self.state.children.get_mut(&id) else {
                    return;
                };
                let pid = child.pid;
                child.unwell.get_or_insert(why.clone());
                self.log(format!(
                    "new child pid {pid} says it is not well ({why}) before it is ready; if it declares a probation, it fails it as soon as that begins"
                ));
            }
            _ => {
                let pid = self.state.children.get(&id).map_or(0, |c| c.pid);
                self.log(format!(
                    "child pid {pid} says it is not well ({why}); it is not on probation, so nothing is done"
                ));
            }
        }
    }

    /// `--littleboss=promote`.
    pub(super) fn promote_asked(&mut self, client: ClientId, now: Time) {
        if let Lifecycle::Probation(_) = self.state.lifecycle {
            return self.pass_probation(Some(client), now);
        }
        self.answer(client, no_probation());
    }

    /// `--littleboss=rollback`.
    pub(super) fn rollback_asked(&mut self, client: ClientId, now: Time) {
        if let Lifecycle::Probation(_) = self.state.lifecycle {
            let why = "rolled back by the operator".to_string();
            return self.fail_probation(why, Some(client), None, now);
        }
        self.answer(client, no_probation());
    }

    /// Why a reload, an upgrade or SIGHUP is refused now, if a probation is under way.
    pub(super) fn probation_refusal(&self, now: Time) -> Option<String> {
        let Lifecycle::Probation(trial) = &self.state.lifecycle else {
            return None;
        };
        let pid = self.state.children.get(&trial.new).map_or(0, |c| c.pid);
        let left = (self.state.timers.get(Timer::Probation)).map_or(0, |at| at.saturating_sub(now));
        // Whole seconds, rounded up: "0 s more" would read as over.
        let left = left.div_ceil(1000) * 1000;
        let flag = &self.settings.flag;
        Some(format!(
            "pid {pid} is on probation for {} more: wait, or run --{flag}=promote or --{flag}=rollback",
            seconds(left)
        ))
    }

    /// When the probation under way ends, on the wall clock.
    pub(super) fn probation_ends(&self) -> Option<SystemTime> {
        let Lifecycle::Probation(trial) = &self.state.lifecycle else {
            return None;
        };
        let ends = self.state.timers.get(Timer::Probation)?;
        let child = self.state.children.get(&trial.new)?;
        let from_start = ends.saturating_sub(child.started_at);
        child
            .started?
            .checked_add(Duration::from_millis(from_start))
    }
}
