//! The journal: what the supervisor did, its last [`JOURNAL_LEN`] events, for
//! `history` and `history-json`.
//!
//! An event opens when something begins (a reload is asked, a child exits) and is
//! filled in as it goes on: a reload's steps, its new child's pid, the connections that
//! move, its outcome. Which event a child's news belongs to is its [`Link`]: the new
//! child of a reload (its pid, hello and readiness), the old one (its exit, the
//! connections it hands over), or a child rolled back (the connections it hands back).
//! A reload's retired child makes no event of its own, and a persist crash loop is one
//! `restart` event whose count grows, so that a loop cannot push the reloads out.
//!
//! A reload's event also records the state its new child took from the old one, once
//! the transfer is committed ([`TakenState`]).
//!
//! The journal is part of the state an upgrade hands over (state version 4, and 5 with
//! the states taken): its numbers never repeat for the supervisor's life.

use std::collections::{BTreeMap, VecDeque};

use crate::control::history::{
    Connections, Event, History, Kind, Outcome, Steps, TakenState, epoch_ms,
};
use crate::control::status_fit::cut_field;

use super::{ChildId, Exit, Machine, Time};

/// How many events the journal keeps.
pub(crate) const JOURNAL_LEN: usize = 256;

/// The last events, and what ties children to them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Journal {
    /// Oldest first, at most [`JOURNAL_LEN`].
    pub events: VecDeque<Event>,
    /// The next event's number.
    pub next_seq: u64,
    /// The reload, upgrade or cold rollback under way, until its outcome.
    pub under_way: Option<u64>,
    /// Which event each child's news belongs to.
    pub links: BTreeMap<ChildId, Link>,
}

/// A child's part in an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub seq: u64,
    pub part: Part,
}

/// What a child is to its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The child the event started: its pid, hello and readiness are the event's.
    New,
    /// The child it replaces: the connections it hands over moved, and its exit is the
    /// event's last step.
    Old,
    /// A child rolled back: the connections it hands over moved back.
    Back,
}

/// A step of a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Opened,
    Hello,
    Ready,
    OldGone,
}

impl Journal {
    /// The events, oldest first, for a `history` reply.
    pub(crate) fn history(&self) -> History {
        History {
            omitted: 0,
            events: self.events.iter().cloned().collect(),
        }
    }

    fn get(&mut self, seq: u64) -> Option<&mut Event> {
        // The events of interest are the newest: look from there.
        self.events.iter_mut().rev().find(|e| e.seq == seq)
    }

    /// The newest event of `kind`, if one is kept.
    pub(crate) fn last_of(&self, kind: Kind) -> Option<u64> {
        self.events
            .iter()
            .rev()
            .find(|e| e.kind == kind)
            .map(|e| e.seq)
    }

    /// A new event of `kind` that started at `wall` (ms since the epoch).
    fn open(&mut self, kind: Kind, wall: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.events.len() == JOURNAL_LEN {
            self.events.pop_front();
        }
        let with_steps = matches!(kind, Kind::Reload | Kind::Upgrade);
        self.events.push_back(Event {
            seq,
            kind,
            outcome: None,
            started_ms: wall,
            duration_ms: None,
            old_pid: None,
            new_pid: None,
            path: None,
            reason: None,
            steps: with_steps.then(Steps::default),
            connections: with_steps.then(Connections::default),
            count: None,
            state: None,
        });
        seq
    }

    /// Changes event `seq`, if it is still kept.
    fn edit(&mut self, seq: u64, change: impl FnOnce(&mut Event)) {
        if let Some(event) = self.get(seq) {
            change(event);
        }
    }

    /// Event `seq` ended at `wall` with `outcome`.
    fn end(&mut self, seq: u64, outcome: Option<Outcome>, reason: Option<String>, wall: u64) {
        self.edit(seq, |e| {
            e.outcome = outcome;
            e.duration_ms = Some(wall.saturating_sub(e.started_ms));
            if let Some(reason) = reason {
                e.reason = Some(cut_field(&reason));
            }
        });
        if self.under_way == Some(seq) {
            self.under_way = None;
        }
    }

    /// The child's step, if it has a part in an event.
    fn step(&mut self, child: ChildId, step: Step, wall: u64) {
        let Some(link) = self.links.get(&child).copied() else {
            return;
        };
        self.edit(link.seq, |e| {
            let at = Some(wall.saturating_sub(e.started_ms));
            let steps = e.steps.get_or_insert_with(Steps::default);
            match (step, link.part) {
                (Step::Hello, Part::New) => steps.hello_ms = steps.hello_ms.or(at),
                (Step::Ready, Part::New) => steps.ready_ms = steps.ready_ms.or(at),
                (Step::OldGone, Part::Old) => steps.old_gone_ms = at,
                _ => {}
            }
        });
    }

    /// `n` connections that `sender` handed over were taken.
    fn moved(&mut self, sender: ChildId, n: u64) {
        let Some(link) = self.links.get(&sender).copied() else {
            return;
        };
        self.edit(link.seq, |e| {
            let c = e.connections.get_or_insert_with(Connections::default);
            match link.part {
                Part::Old => c.moved += n,
                Part::Back => c.moved_back += n,
                Part::New => {}
            }
        });
    }

    /// `child`, the new child of its event, took a state of `bytes` bytes and `fds`
    /// named fds from the child it replaced.
    fn took_state(&mut self, child: ChildId, bytes: u64, fds: u32) {
        if let Some(Link {
            seq,
            part: Part::New,
        }) = self.links.get(&child).copied()
        {
            self.edit(seq, |e| e.state = Some(TakenState { bytes, fds }));
        }
    }

    /// The bytes of state that `child` took at the event it is the new child of, if
    /// that event is still kept and records one.
    pub(crate) fn state_taken(&self, child: Option<ChildId>) -> Option<u64> {
        let link = self.links.get(&child?)?;
        if link.part != Part::New {
            return None;
        }
        let event = self.events.iter().rev().find(|e| e.seq == link.seq)?;
        event.state.map(|s| s.bytes)
    }

    /// `n` connections that `sender` handed over went back to it, which closes them.
    fn closed(&mut self, sender: ChildId, n: u64) {
        let Some(link) = self.links.get(&sender).copied() else {
            return;
        };
        self.edit(link.seq, |e| {
            e.connections
                .get_or_insert_with(Connections::default)
                .closed += n;
        });
    }
}

impl Machine {
    /// Now, as milliseconds since the epoch: the supervisor's start plus its clock.
    fn wall(&self, now: Time) -> u64 {
        epoch_ms(self.state.started).saturating_add(now)
    }

    /// A reload (or an upgrade, for `upgrade`) of `path` begins, replacing the serving
    /// child with pid `old_pid`.
    pub(super) fn journal_reload(
        &mut self,
        upgrade: bool,
        path: String,
        old_pid: Option<u32>,
        now: Time,
    ) {
        let wall = self.wall(now);
        let journal = &mut self.state.journal;
        let kind = if upgrade { Kind::Upgrade } else { Kind::Reload };
        let seq = journal.open(kind, wall);
        journal.edit(seq, |e| {
            e.path = Some(path);
            e.old_pid = old_pid;
        });
        journal.under_way = Some(seq);
    }

    /// A step of the reload under way (its binary opened), or of a child's event.
    pub(super) fn journal_step(&mut self, child: Option<ChildId>, step: Step, now: Time) {
        let wall = self.wall(now);
        let journal = &mut self.state.journal;
        match child {
            Some(child) => journal.step(child, step, wall),
            None => {
                if let Some(seq) = journal.under_way {
                    journal.edit(seq, |e| {
                        let at = Some(wall.saturating_sub(e.started_ms));
                        e.steps.get_or_insert_with(Steps::default).opened_ms = at;
                    });
                }
            }
        }
    }

    /// `child` takes `part` in the event under way (if one is), or in `seq`.
    pub(super) fn journal_link(&mut self, child: ChildId, part: Part, seq: Option<u64>) {
        let journal = &mut self.state.journal;
        if let Some(seq) = seq.or(journal.under_way) {
            journal.links.insert(child, Link { seq, part });
        }
    }

    /// The event `child` started has its pid.
    pub(super) fn journal_spawned(&mut self, child: ChildId, pid: u32) {
        let journal = &mut self.state.journal;
        if let Some(Link {
            seq,
            part: Part::New,
        }) = journal.links.get(&child).copied()
        {
            journal.edit(seq, |e| e.new_pid = Some(pid));
        }
    }

    /// The new child of the event `child` started took a state of `bytes` bytes and
    /// `fds` named fds from the child it replaced (a committed state transfer).
    pub(super) fn journal_state(&mut self, child: ChildId, bytes: u64, fds: u32) {
        self.state.journal.took_state(child, bytes, fds);
    }

    /// The child exited: it is the last step of the event it was the old child of.
    pub(super) fn journal_gone(&mut self, child: ChildId, now: Time) {
        let wall = self.wall(now);
        self.state.journal.step(child, Step::OldGone, wall);
    }

    /// The reload (or upgrade, or cold rollback) under way ended with `outcome`. It
    /// lasted until now, or `took` ms (a reload on probation: until its child was
    /// ready).
    pub(super) fn journal_end(
        &mut self,
        outcome: Outcome,
        reason: Option<String>,
        took: Option<u64>,
        now: Time,
    ) {
        let wall = self.wall(now);
        let journal = &mut self.state.journal;
        if let Some(seq) = journal.under_way {
            journal.end(seq, Some(outcome), reason, wall);
            if let Some(took) = took {
                journal.edit(seq, |e| e.duration_ms = Some(took));
            }
        }
    }

    /// Something happened at once: an event of `kind`, done. Returns its number.
    pub(super) fn journal_event(
        &mut self,
        kind: Kind,
        pids: (Option<u32>, Option<u32>),
        path: Option<String>,
        reason: Option<String>,
        outcome: Option<Outcome>,
        now: Time,
    ) -> u64 {
        let wall = self.wall(now);
        let journal = &mut self.state.journal;
        let seq = journal.open(kind, wall);
        journal.edit(seq, |e| {
            (e.old_pid, e.new_pid) = pids;
            e.path = path;
            e.reason = reason.map(|r| cut_field(&r));
            e.outcome = outcome;
        });
        seq
    }

    /// The serving child `pid` of `path` exited on its own, and nothing starts in its
    /// place (the supervisor stops, or in dev mode waits for a build).
    pub(super) fn journal_exit(&mut self, pid: u32, path: String, exit: &Exit, now: Time) {
        let pids = (Some(pid), None);
        self.journal_event(
            Kind::Exit,
            pids,
            Some(path),
            Some(exit.describe()),
            None,
            now,
        );
    }

    /// The program exited (`old_pid`, `reason`) and starts again: the `restart` event,
    /// or the one before it again if nothing happened since (a crash loop is one
    /// event). The child that starts later is linked to it ([`Journal::last_of`]).
    pub(super) fn journal_restart(
        &mut self,
        old_pid: Option<u32>,
        path: String,
        reason: String,
        now: Time,
    ) {
        let wall = self.wall(now);
        let journal = &mut self.state.journal;
        let again = journal
            .events
            .back()
            .filter(|e| e.kind == Kind::Restart && journal.under_way.is_none())
            .map(|e| e.seq);
        let seq = match again {
            Some(seq) => seq,
            None => journal.open(Kind::Restart, wall),
        };
        journal.edit(seq, |e| {
            e.count = Some(e.count.unwrap_or(0) + 1);
            e.old_pid = old_pid;
            e.new_pid = None;
            e.path = Some(path);
            e.reason = Some(cut_field(&reason));
            // How long the loop has gone on: from its first exit to this one.
            e.duration_ms = Some(wall.saturating_sub(e.started_ms));
        });
    }

    /// `n` connections that `sender` handed over were taken by their receiver.
    pub(super) fn journal_moved(&mut self, sender: ChildId, n: u64) {
        self.state.journal.moved(sender, n);
    }

    /// `n` connections that `sender` handed over went back to it.
    pub(super) fn journal_closed(&mut self, sender: ChildId, n: u64) {
        self.state.journal.closed(sender, n);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::SystemTime;

    use super::super::{ClientId, Effect, Input, Settings};
    use super::*;
    use crate::control::protocol::{
        ChildHello, ChildMsg, PROTOCOL, ReloadRequest, Request, StateHeader, SupervisorMsg,
        Versions,
    };
    use crate::supervisor::state::ProgramRecord;

    /// Plays the shell for `m`: starts each child it asks for (pids from 100) and
    /// prepares each reload's binary; returns what it sent each child.
    fn carry_out(m: &mut Machine, sent: &mut Vec<(ChildId, SupervisorMsg)>) {
        loop {
            let mut inputs = Vec::new();
            while let Some(effect) = m.poll_effect() {
                match effect {
                    Effect::Spawn { child, .. } => inputs.push(Input::Spawned {
                        child,
                        pid: 99 + child.0 as u32,
                        started: SystemTime::UNIX_EPOCH,
                    }),
                    Effect::Prepare { path, args, .. } => inputs.push(Input::Prepared {
                        program: ProgramRecord { path, args, exe: 2 },
                        listeners: Vec::new(),
                    }),
                    Effect::Send { child, msg } => sent.push((child, msg)),
                    Effect::RelayState { to, msg, .. } => sent.push((to, msg)),
                    _ => {}
                }
            }
            if inputs.is_empty() {
                return;
            }
            for input in inputs {
                m.handle(input, 10);
            }
        }
    }

    fn hello() -> ChildMsg {
        ChildMsg::Hello(ChildHello {
            name: "svc".into(),
            pid: 0,
            calls_ready: true,
            settle_ms: 0,
            ready_timeout_ms: 30_000,
            lameduck_ms: 2_000,
        })
    }

    /// A committed state transfer is on the reload's event, in `history` and
    /// `history-json`, and in `status`.
    #[test]
    fn a_committed_transfer_shows_on_the_reload_s_event() {
        let settings = Settings {
            name: "svc".into(),
            flag: "littleboss".into(),
            persist: false,
            fallback: true,
            lameduck_ms: 2_000,
            hello_timeout_ms: 30_000,
            dev: false,
            versions: Versions {
                oldest: 1,
                newest: PROTOCOL,
            },
            move_cap: 4,
            take_ms: 1_000,
        };
        let program = ProgramRecord {
            path: PathBuf::from("/srv/svc"),
            args: vec!["svc".into()],
            exe: 1,
        };
        let mut m = Machine::new(settings, 1, SystemTime::UNIX_EPOCH, Vec::new(), program, 0);
        let mut sent = Vec::new();
        let mut feed = |m: &mut Machine, child: ChildId, msg: ChildMsg| {
            m.handle(Input::Message { child, msg }, 10);
            carry_out(m, &mut sent);
        };
        carry_out(&mut m, &mut Vec::new());
        let old = ChildId(1);
        feed(&mut m, old, hello());
        feed(&mut m, old, ChildMsg::Ready);
        feed(&mut m, old, ChildMsg::OffersState);
        let reload = Request::Reload(ReloadRequest {
            path: b"/srv/svc".to_vec(),
            args: None,
            listeners: Vec::new(),
        });
        m.handle(
            Input::Request {
                client: ClientId(1),
                request: reload,
            },
            10,
        );
        carry_out(&mut m, &mut Vec::new());
        let new = ChildId(2);
        assert!(
            m.state.children.contains_key(&new),
            "the reload's new child"
        );
        feed(&mut m, new, hello());
        feed(&mut m, new, ChildMsg::StateAsk { timeout_ms: 5_000 });
        let head = StateHeader {
            size: 1 << 20,
            fds: 3,
            from: 0,
            update: false,
        };
        feed(&mut m, old, ChildMsg::StateGive(head));
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        feed(&mut m, old, ChildMsg::StateFds(names));
        // Given, but not committed yet: the event has no state.
        let seq = m
            .state
            .journal
            .last_of(Kind::Reload)
            .expect("the reload's event");
        let event = |m: &Machine| {
            m.state
                .journal
                .events
                .iter()
                .find(|e| e.seq == seq)
                .cloned()
        };
        assert_eq!(event(&m).and_then(|e| e.state), None);
        feed(&mut m, new, ChildMsg::Ready);
        assert!(
            sent.contains(&(old, SupervisorMsg::StateDone { committed: true })),
            "{sent:?}"
        );
        let event = event(&m).expect("kept");
        assert_eq!(
            event.state,
            Some(TakenState {
                bytes: 1 << 20,
                fds: 3
            })
        );
        let line = event.line();
        assert!(line.contains(" reload 100 -> 101 succeeded in "), "{line}");
        assert!(
            line.ends_with(", took 1048576 bytes of state and 3 fds"),
            "{line}"
        );
        assert_eq!(
            event.json()["state"],
            serde_json::json!({ "bytes": 1_048_576, "fds": 3 })
        );
        assert_eq!(m.status().last_reload_state_bytes, Some(1 << 20));
        // After an upgrade (which hands no transfer over), the journal still says it.
        let resumed = Machine::resume(m.settings.clone(), m.state.clone(), Default::default());
        assert_eq!(resumed.transfers.last_bytes(Some(new)), None);
        assert_eq!(resumed.status().last_reload_state_bytes, Some(1 << 20));
    }

    /// The state goes on the event only through its new child: the old child's part,
    /// or a child with none, records nothing.
    #[test]
    fn only_the_new_child_s_state_is_recorded() {
        let mut journal = Journal::default();
        let seq = journal.open(Kind::Reload, 1_000);
        for (child, part) in [(1, Part::Old), (2, Part::New)] {
            journal.links.insert(ChildId(child), Link { seq, part });
        }
        journal.took_state(ChildId(1), 5, 0);
        journal.took_state(ChildId(3), 5, 0);
        assert_eq!(journal.events.back().and_then(|e| e.state), None);
        assert_eq!(journal.state_taken(Some(ChildId(2))), None);
        journal.took_state(ChildId(2), 4096, 2);
        let event = journal
            .events
            .back()
            .cloned()
            .unwrap_or_else(|| unreachable!());
        assert_eq!(
            event.state,
            Some(TakenState {
                bytes: 4096,
                fds: 2
            })
        );
        assert!(
            event
                .line()
                .ends_with(", took 4096 bytes of state and 2 fds")
        );
        assert_eq!(journal.state_taken(Some(ChildId(2))), Some(4096));
        assert_eq!(journal.state_taken(Some(ChildId(1))), None);
        assert_eq!(journal.state_taken(None), None);
    }

    #[test]
    fn the_journal_keeps_its_last_events_and_never_repeats_a_number() {
        let mut journal = Journal::default();
        for i in 0..(JOURNAL_LEN as u64 + 10) {
            let seq = journal.open(Kind::Reload, 1_000 + i);
            assert_eq!(seq, i);
        }
        assert_eq!(journal.events.len(), JOURNAL_LEN);
        assert_eq!(journal.events.front().map(|e| e.seq), Some(10));
        assert_eq!(journal.next_seq, JOURNAL_LEN as u64 + 10);
    }

    #[test]
    fn a_child_s_news_goes_to_its_event_by_its_part() {
        let mut journal = Journal::default();
        let seq = journal.open(Kind::Reload, 1_000);
        journal.links.insert(
            ChildId(1),
            Link {
                seq,
                part: Part::Old,
            },
        );
        journal.links.insert(
            ChildId(2),
            Link {
                seq,
                part: Part::New,
            },
        );
        journal.step(ChildId(2), Step::Hello, 1_003);
        journal.step(ChildId(2), Step::Ready, 1_007);
        journal.step(ChildId(1), Step::Ready, 1_009);
        journal.moved(ChildId(1), 312);
        journal.closed(ChildId(1), 2);
        journal.step(ChildId(1), Step::OldGone, 1_040);
        let event = journal
            .events
            .back()
            .cloned()
            .unwrap_or_else(|| unreachable!());
        let steps = event.steps.unwrap_or_default();
        assert_eq!(
            (steps.hello_ms, steps.ready_ms, steps.old_gone_ms),
            (Some(3), Some(7), Some(40))
        );
        let c = event.connections.unwrap_or_default();
        assert_eq!((c.moved, c.moved_back, c.closed), (312, 0, 2));
    }
}
