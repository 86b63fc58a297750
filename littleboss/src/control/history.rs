//! The supervisor's journal as it crosses the control socket and the upgrade state: one
//! [`Event`] per thing the supervisor did, and how `history` and `history-json` show
//! them.
//!
//! The layout is part of the protocol and of the upgrade state, pinned by golden bytes:
//! a change is a new version, never an edit. Protocol 6 lays an [`Event`] out with the
//! state its new child took ([`TakenState`]); protocol 5 without it ([`EventV5`]). A
//! reply is fitted to a control frame by
//! [`status_fit::fit_history`](super::status_fit::fit_history).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One thing the supervisor did. Times are milliseconds: `started_ms` since the Unix
/// epoch, the others counted from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Event {
    /// Never repeats for the supervisor's life, upgrades included.
    pub seq: u64,
    pub kind: Kind,
    /// `None` while it is under way, and for kinds that have none.
    pub outcome: Option<Outcome>,
    pub started_ms: u64,
    pub duration_ms: Option<u64>,
    pub old_pid: Option<u32>,
    pub new_pid: Option<u32>,
    /// The binary.
    pub path: Option<String>,
    /// Why: the words the command printed, or what the child's main said.
    pub reason: Option<String>,
    /// A reload's or an upgrade's steps.
    pub steps: Option<Steps>,
    /// What became of the connections, for a reload or an upgrade.
    pub connections: Option<Connections>,
    /// A restart: how many times in a row, with nothing else between.
    pub count: Option<u64>,
    /// A reload or an upgrade: the state its new child took from the child it
    /// replaced, once the transfer was committed (protocol 6).
    pub state: Option<TakenState>,
}

/// What the new child of a reload took of the state of the child it replaced (state
/// transfer): its bytes and named fds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TakenState {
    pub bytes: u64,
    pub fds: u32,
}

/// What kind of thing happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Reload,
    Upgrade,
    /// The program started again after it exited (persist).
    Restart,
    /// The previous binary started again after a reloaded child failed.
    Fallback,
    /// A serving child exited on its own, and nothing started in its place.
    Exit,
    Stop,
    Promote,
    Rollback,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Reload => "reload",
            Kind::Upgrade => "upgrade",
            Kind::Restart => "restart",
            Kind::Fallback => "fallback",
            Kind::Exit => "exit",
            Kind::Stop => "stop",
            Kind::Promote => "promote",
            Kind::Rollback => "rollback",
        }
    }
}

/// How a reload, an upgrade or a rollback ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Succeeded,
    /// The new child never became ready, or its binary could not be prepared.
    Failed,
    /// It failed its probation.
    RolledBack,
}

impl Outcome {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
        }
    }
}

/// When each step of a reload was reached, in ms from its start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Steps {
    /// The binary was opened and the listeners it moves were bound.
    pub opened_ms: Option<u64>,
    /// The new child said hello.
    pub hello_ms: Option<u64>,
    /// The new child was ready.
    pub ready_ms: Option<u64>,
    /// The old child was gone.
    pub old_gone_ms: Option<u64>,
}

/// What became of a reload's connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Connections {
    /// Idle connections the new child took from the old one.
    pub moved: u64,
    /// Connections the new child gave back at a rollback.
    pub moved_back: u64,
    /// Connections handed over that went back to their sender, which closed them.
    pub closed: u64,
}

/// The journal's last events, oldest first, and how many older ones were left out to
/// fit a control frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct History {
    pub omitted: u64,
    pub events: Vec<Event>,
}

impl History {
    /// `history`: one line per event, oldest first, after `(N older events omitted)`
    /// if any were.
    pub(crate) fn lines(&self) -> String {
        let mut out = String::new();
        if self.omitted > 0 {
            out.push_str(&format!("({} older events omitted)\n", self.omitted));
        }
        for event in &self.events {
            out.push_str(&event.line());
            out.push('\n');
        }
        out
    }

    /// `history-json`: `{"omitted": N, "events": [...]}`.
    pub(crate) fn json(&self) -> Value {
        json!({
            "omitted": self.omitted,
            "events": self.events.iter().map(Event::json).collect::<Vec<_>>(),
        })
    }
}

/// [`History`] as protocol 5 lays it out: its events without the state taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HistoryV5 {
    omitted: u64,
    events: Vec<EventV5>,
}

/// [`Event`] as protocol 5 lays it out: without `state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventV5 {
    seq: u64,
    kind: Kind,
    outcome: Option<Outcome>,
    started_ms: u64,
    duration_ms: Option<u64>,
    old_pid: Option<u32>,
    new_pid: Option<u32>,
    path: Option<String>,
    reason: Option<String>,
    steps: Option<Steps>,
    connections: Option<Connections>,
    count: Option<u64>,
}

impl From<History> for HistoryV5 {
    fn from(h: History) -> HistoryV5 {
        HistoryV5 {
            omitted: h.omitted,
            events: h.events.into_iter().map(EventV5::from).collect(),
        }
    }
}

impl From<HistoryV5> for History {
    fn from(h: HistoryV5) -> History {
        History {
            omitted: h.omitted,
            events: h.events.into_iter().map(Event::from).collect(),
        }
    }
}

impl From<Event> for EventV5 {
    fn from(e: Event) -> EventV5 {
        EventV5 {
            seq: e.seq,
            kind: e.kind,
            outcome: e.outcome,
            started_ms: e.started_ms,
            duration_ms: e.duration_ms,
            old_pid: e.old_pid,
            new_pid: e.new_pid,
            path: e.path,
            reason: e.reason,
            steps: e.steps,
            connections: e.connections,
            count: e.count,
        }
    }
}

impl From<EventV5> for Event {
    /// A supervisor of protocol 5 has no state transfer.
    fn from(e: EventV5) -> Event {
        Event {
            seq: e.seq,
            kind: e.kind,
            outcome: e.outcome,
            started_ms: e.started_ms,
            duration_ms: e.duration_ms,
            old_pid: e.old_pid,
            new_pid: e.new_pid,
            path: e.path,
            reason: e.reason,
            steps: e.steps,
            connections: e.connections,
            count: e.count,
            state: None,
        }
    }
}

/// `started_ms` as a time.
fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A time as milliseconds since the Unix epoch (0 before it).
pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

impl Event {
    /// `2026-12-03T10:04:05Z reload 4242 -> 4300 succeeded in 7 ms, moved 312
    /// connections, took 1048576 bytes of state and 3 fds`.
    pub(crate) fn line(&self) -> String {
        let mut line = format!(
            "{} {}",
            humantime::format_rfc3339_seconds(at(self.started_ms)),
            self.kind.name()
        );
        match (self.old_pid, self.new_pid) {
            (Some(old), Some(new)) => line.push_str(&format!(" {old} -> {new}")),
            (Some(old), None) => line.push_str(&format!(" {old}")),
            (None, Some(new)) => line.push_str(&format!(" -> {new}")),
            (None, None) => {}
        }
        if let Some(outcome) = self.outcome {
            line.push_str(&format!(" {}", outcome.name()));
        }
        if let Some(ms) = self.duration_ms {
            line.push_str(&format!(" in {ms} ms"));
        }
        if let Some(count) = self.count.filter(|c| *c > 1) {
            line.push_str(&format!(", {count} times"));
        }
        if let Some(c) = self.connections {
            let plural = |n: u64| if n == 1 { "" } else { "s" };
            for (n, what) in [
                (c.moved, "moved"),
                (c.moved_back, "moved back"),
                (c.closed, "closed"),
            ] {
                if n > 0 {
                    line.push_str(&format!(", {what} {n} connection{}", plural(n)));
                }
            }
        }
        if let Some(TakenState { bytes, fds }) = self.state {
            let bytes_word = if bytes == 1 { "byte" } else { "bytes" };
            line.push_str(&format!(", took {bytes} {bytes_word} of state"));
            if fds > 0 {
                let fds_word = if fds == 1 { "fd" } else { "fds" };
                line.push_str(&format!(" and {fds} {fds_word}"));
            }
        }
        if let Some(reason) = &self.reason {
            line.push_str(&format!(": {reason}"));
        }
        line
    }

    /// The event as `history-json` gives it: every key, `null` where it does not
    /// apply.
    pub(crate) fn json(&self) -> Value {
        let started = humantime::format_rfc3339_millis(at(self.started_ms)).to_string();
        json!({
            "seq": self.seq,
            "kind": self.kind.name(),
            "outcome": self.outcome.map(Outcome::name),
            "started": started,
            "duration_ms": self.duration_ms,
            "old_pid": self.old_pid,
            "new_pid": self.new_pid,
            "path": self.path,
            "reason": self.reason,
            "steps": self.steps.map(|s| json!({
                "opened_ms": s.opened_ms,
                "hello_ms": s.hello_ms,
                "ready_ms": s.ready_ms,
                "old_gone_ms": s.old_gone_ms,
            })),
            "connections": self.connections.map(|c| json!({
                "moved": c.moved,
                "moved_back": c.moved_back,
                "closed": c.closed,
            })),
            "count": self.count,
            "state": self.state.map(|s| json!({
                "bytes": s.bytes,
                "fds": s.fds,
            })),
        })
    }
}

/// A reload that succeeded, as the tests and the golden bytes have it.
#[cfg(test)]
pub(crate) fn sample_reload(seq: u64) -> Event {
    Event {
        seq,
        kind: Kind::Reload,
        outcome: Some(Outcome::Succeeded),
        started_ms: 1_764_756_245_000,
        duration_ms: Some(7),
        old_pid: Some(4242),
        new_pid: Some(4300),
        path: Some("/srv/myblog".into()),
        reason: None,
        steps: Some(Steps {
            opened_ms: Some(1),
            hello_ms: Some(3),
            ready_ms: Some(7),
            old_gone_ms: Some(40),
        }),
        connections: Some(Connections {
            moved: 312,
            ..Connections::default()
        }),
        count: None,
        state: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_reads_as_one_line() {
        assert_eq!(
            sample_reload(1).line(),
            "2025-12-03T10:04:05Z reload 4242 -> 4300 succeeded in 7 ms, moved 312 connections"
        );
        let restart = Event {
            kind: Kind::Restart,
            outcome: None,
            duration_ms: None,
            steps: None,
            connections: None,
            count: Some(3),
            reason: Some("exited with code 1 after 20 ms".into()),
            ..sample_reload(2)
        };
        assert_eq!(
            restart.line(),
            "2025-12-03T10:04:05Z restart 4242 -> 4300, 3 times: exited with code 1 after 20 ms"
        );
    }

    #[test]
    fn json_has_every_key() {
        let json = sample_reload(1).json();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for key in [
            "seq",
            "kind",
            "outcome",
            "started",
            "duration_ms",
            "old_pid",
            "new_pid",
            "path",
            "reason",
            "steps",
            "connections",
            "count",
            "state",
        ] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        assert_eq!(json["started"], "2025-12-03T10:04:05.000Z");
        assert_eq!(json["outcome"], "succeeded");
        assert_eq!(json["steps"]["old_gone_ms"], 40);
        assert_eq!(json["reason"], Value::Null);
        assert_eq!(json["state"], Value::Null);
        let took = Event {
            state: Some(TakenState {
                bytes: 1_048_576,
                fds: 3,
            }),
            ..sample_reload(1)
        };
        assert_eq!(
            took.json()["state"],
            json!({ "bytes": 1_048_576, "fds": 3 })
        );
    }

    #[test]
    fn the_state_a_reload_s_new_child_took_reads_after_its_connections() {
        let took = |bytes, fds| Event {
            state: Some(TakenState { bytes, fds }),
            ..sample_reload(1)
        };
        assert_eq!(
            took(1_048_576, 0).line(),
            "2025-12-03T10:04:05Z reload 4242 -> 4300 succeeded in 7 ms, moved 312 connections, took 1048576 bytes of state"
        );
        assert_eq!(
            took(1_048_576, 3).line(),
            "2025-12-03T10:04:05Z reload 4242 -> 4300 succeeded in 7 ms, moved 312 connections, took 1048576 bytes of state and 3 fds"
        );
        let one = Event {
            connections: None,
            reason: Some("why".into()),
            ..took(1, 1)
        };
        assert_eq!(
            one.line(),
            "2025-12-03T10:04:05Z reload 4242 -> 4300 succeeded in 7 ms, took 1 byte of state and 1 fd: why"
        );
    }

    /// Protocol 5's layout of an event is protocol 6's without the state: the same
    /// bytes as an event that took none.
    #[test]
    fn protocol_5_lays_an_event_out_without_its_state() {
        let took = Event {
            state: Some(TakenState { bytes: 9, fds: 2 }),
            ..sample_reload(1)
        };
        let v5 = postcard::to_stdvec(&EventV5::from(took.clone())).unwrap();
        let mut none = postcard::to_stdvec(&sample_reload(1)).unwrap();
        assert_eq!(none.pop(), Some(0), "`state` is the last field, `None`");
        assert_eq!(v5, none);
        let read: EventV5 = postcard::from_bytes(&v5).unwrap();
        assert_eq!(Event::from(read), sample_reload(1));
    }
}
