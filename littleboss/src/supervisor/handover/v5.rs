//! The handover in the layout of state version 5 ([`HandoverV5`]): version 4's, and the
//! state each event's new child took.

use crate::control::history::TakenState;
use crate::supervisor::machine::journal::Journal;
use crate::wire::state_v4::HandoverV4;
use crate::wire::state_v5::HandoverV5;

use super::Handover;

impl HandoverV5 {
    /// Version 4's layout `v4` of `handover`, with the states its events record.
    pub(crate) fn from_handover(v4: HandoverV4, handover: &Handover) -> HandoverV5 {
        HandoverV5 {
            v4,
            states: states_v5(&handover.state.journal),
        }
    }

    /// The handover this layout holds. A state of an event the journal does not keep
    /// is left out.
    pub(crate) fn into_handover(self) -> Handover {
        let mut handover = self.v4.into_handover();
        with_states(&mut handover.state.journal, self.states);
        handover
    }
}

fn states_v5(journal: &Journal) -> Vec<(u64, u64, u32)> {
    (journal.events.iter())
        .filter_map(|e| e.state.map(|s| (e.seq, s.bytes, s.fds)))
        .collect()
}

fn with_states(journal: &mut Journal, states: Vec<(u64, u64, u32)>) {
    for (seq, bytes, fds) in states {
        if let Some(event) = journal.events.iter_mut().find(|e| e.seq == seq) {
            event.state = Some(TakenState { bytes, fds });
        }
    }
}

/// The state's journal and counts, written in version 5's layout and read back: the
/// machine's tests check after every step that they are the same.
#[cfg(test)]
pub(crate) fn journal_through_v5(
    state: &crate::supervisor::machine::State,
) -> (Journal, crate::supervisor::machine::tally::Tally) {
    let (mut journal, tally) = super::v4::journal_through_v4(state);
    let bytes = postcard::to_stdvec(&states_v5(&state.journal)).expect("the states serialize");
    let states: Vec<(u64, u64, u32)> = postcard::from_bytes(&bytes).expect("and read back");
    with_states(&mut journal, states);
    (journal, tally)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::control::history::{Kind, sample_reload};
    use crate::control::protocol::{ChildHello, ChildMsg, Versions};
    use crate::supervisor::handover::{HeldChild, MAGIC};
    use crate::supervisor::machine::{ChildId, Input, Machine, MovesRecord, Settings};
    use crate::supervisor::state::ProgramRecord;

    /// A handover of a supervisor whose child serves, with a journal of three events:
    /// a reload whose new child took 1 MiB and 3 fds, an upgrade whose new child took
    /// 4 KiB, and a reload that took none.
    fn handover() -> Handover {
        let settings = Settings {
            name: "svc".into(),
            flag: "littleboss".into(),
            persist: false,
            fallback: true,
            lameduck_ms: 2_000,
            hello_timeout_ms: 30_000,
            dev: false,
            versions: Versions::ours(),
            move_cap: 4,
            take_ms: 1_000,
        };
        let program = ProgramRecord {
            path: "/srv/svc".into(),
            args: vec!["svc".into()],
            exe: 1,
        };
        let mut m = Machine::new(settings, 1, SystemTime::UNIX_EPOCH, Vec::new(), program, 0);
        let child = ChildId(1);
        let started = SystemTime::UNIX_EPOCH;
        m.handle(
            Input::Spawned {
                child,
                pid: 100,
                started,
            },
            0,
        );
        let hello = ChildMsg::Hello(ChildHello {
            name: "svc".into(),
            pid: 100,
            calls_ready: true,
            settle_ms: 0,
            ready_timeout_ms: 30_000,
            lameduck_ms: 2_000,
        });
        m.handle(Input::Message { child, msg: hello }, 1);
        m.handle(
            Input::Message {
                child,
                msg: ChildMsg::Ready,
            },
            2,
        );
        let mut state = m.state().clone();
        let took = |bytes, fds| Some(TakenState { bytes, fds });
        state.journal.events.extend([
            crate::control::history::Event {
                state: took(1 << 20, 3),
                ..sample_reload(7)
            },
            crate::control::history::Event {
                kind: Kind::Upgrade,
                state: took(4096, 0),
                ..sample_reload(8)
            },
            sample_reload(9),
        ]);
        state.journal.next_seq = 10;
        Handover {
            versions: Versions::ours(),
            now: 3,
            dev: false,
            state,
            fds: Vec::new(),
            children: vec![HeldChild {
                id: child,
                pid: 100,
                channel: 7,
                pidfd: Some(8),
                version: Some(6),
            }],
            control: 3,
            socket: "/run/svc.sock".into(),
            lock: 4,
            clients: Vec::new(),
            next_client: 1,
            args: vec!["svc".into(), "--littleboss=start".into()],
            moves: MovesRecord::default(),
        }
    }

    #[test]
    fn version_5_carries_the_state_each_event_s_new_child_took() {
        let handover = handover();
        let bytes = handover.encode(5).expect("encodes");
        assert_eq!(&bytes[MAGIC.len()..MAGIC.len() + 2], &5u16.to_le_bytes());
        let read = Handover::decode(&bytes).expect("decodes");
        assert_eq!(read.state.journal, handover.state.journal);
        let states: Vec<_> = (read.state.journal.events.iter())
            .map(|e| e.state.map(|s| (s.bytes, s.fds)))
            .collect();
        assert_eq!(states, [Some((1 << 20, 3)), Some((4096, 0)), None]);
        assert_eq!(read.encode(5).expect("encodes again"), bytes);
        // Version 5's body is version 4's followed by the list.
        let v4 = handover.encode(4).expect("encodes");
        let body = |b: &[u8]| b[MAGIC.len() + 2..].to_vec();
        let list = postcard::to_stdvec(&states_v5(&handover.state.journal)).unwrap();
        assert_eq!(body(&bytes), [body(&v4), list].concat());
        // And the machine's tests' round trip agrees.
        let (journal, tally) = crate::supervisor::handover::journal_through_v5(&handover.state);
        assert_eq!(journal, handover.state.journal);
        assert_eq!(tally, handover.state.tally);
    }

    /// For a binary that reads only version 4 (a downgrade), the state taken is left
    /// out and nothing else changes: the events are the same without it.
    #[test]
    fn version_4_leaves_the_state_taken_out() {
        let handover = handover();
        let v4 = handover.encode(4).expect("encodes");
        let read = Handover::decode(&v4).expect("a binary that reads version 4 reads it");
        let mut without = handover.state.journal.clone();
        for event in &mut without.events {
            event.state = None;
        }
        assert_eq!(read.state.journal, without);
        assert_eq!(read.state.tally, handover.state.tally);
        assert_eq!(read.encode(4).expect("encodes again"), v4);
        // Without a state taken, versions 4 and 5 hold the same.
        let mut plain = handover;
        plain.state.journal = without.clone();
        let v5 = Handover::decode(&plain.encode(5).expect("encodes")).expect("decodes");
        assert_eq!(v5.state.journal, without);
        // An event that the journal no longer keeps leaves its state out.
        let mut journal = without;
        with_states(&mut journal, vec![(3, 10, 1), (8, 4096, 0)]);
        let states: Vec<_> = journal.events.iter().map(|e| e.state).collect();
        assert_eq!(
            states,
            [
                None,
                Some(TakenState {
                    bytes: 4096,
                    fds: 0
                }),
                None
            ]
        );
    }
}
