//! The handover in the layout of state version 4 ([`HandoverV4`]): version 3's, and the
//! journal and the counts behind the metrics.

use std::collections::BTreeMap;

use crate::control::history::{Connections, Event, Kind, Outcome, Steps};
use crate::control::protocol::HttpCounts;
use crate::supervisor::machine::ChildId;
use crate::supervisor::machine::journal::{Journal, Link, Part};
use crate::supervisor::machine::tally::{Buckets, HttpTotals, Tally};
use crate::wire::state_v3::HandoverV3;
use crate::wire::state_v4::{EventV4, HandoverV4, HttpCountsV4, JournalV4, TallyV4};

use super::Handover;

const KINDS: [Kind; 8] = [
    Kind::Reload,
    Kind::Upgrade,
    Kind::Restart,
    Kind::Fallback,
    Kind::Exit,
    Kind::Stop,
    Kind::Promote,
    Kind::Rollback,
];
const OUTCOMES: [Outcome; 3] = [Outcome::Succeeded, Outcome::Failed, Outcome::RolledBack];
const PARTS: [Part; 3] = [Part::New, Part::Old, Part::Back];

/// The index of `value` in `table` (every value is in its table).
fn index<T: PartialEq>(table: &[T], value: &T) -> u8 {
    table.iter().position(|t| t == value).unwrap_or(0) as u8
}

impl HandoverV4 {
    /// Version 3's layout `v3` of `handover`, with its journal and tally.
    pub(crate) fn from_handover(v3: HandoverV3, handover: &Handover) -> HandoverV4 {
        HandoverV4 {
            v3,
            journal: journal_v4(&handover.state.journal),
            tally: tally_v4(&handover.state.tally),
        }
    }

    /// The handover this layout holds. A value the layout cannot hold (a kind of
    /// event of a later release) is left out rather than misread.
    pub(crate) fn into_handover(self) -> Handover {
        let mut handover = self.v3.into_handover();
        handover.state.journal = journal_from_v4(self.journal);
        handover.state.tally = tally_from_v4(self.tally);
        handover
    }
}

fn journal_v4(journal: &Journal) -> JournalV4 {
    JournalV4 {
        events: journal.events.iter().map(event_v4).collect(),
        next_seq: journal.next_seq,
        under_way: journal.under_way,
        links: (journal.links.iter())
            .map(|(child, link)| (child.0, link.seq, index(&PARTS, &link.part)))
            .collect(),
    }
}

fn event_v4(e: &Event) -> EventV4 {
    EventV4 {
        seq: e.seq,
        kind: index(&KINDS, &e.kind),
        outcome: e.outcome.map(|o| index(&OUTCOMES, &o)),
        started_ms: e.started_ms,
        duration_ms: e.duration_ms,
        old_pid: e.old_pid,
        new_pid: e.new_pid,
        path: e.path.clone(),
        reason: e.reason.clone(),
        steps: e
            .steps
            .map(|s| [s.opened_ms, s.hello_ms, s.ready_ms, s.old_gone_ms]),
        connections: e.connections.map(|c| [c.moved, c.moved_back, c.closed]),
        count: e.count,
    }
}

fn journal_from_v4(v4: JournalV4) -> Journal {
    Journal {
        events: v4.events.into_iter().filter_map(event_from_v4).collect(),
        next_seq: v4.next_seq,
        under_way: v4.under_way,
        links: (v4.links.into_iter())
            .filter_map(|(child, seq, part)| {
                let part = *PARTS.get(usize::from(part))?;
                Some((ChildId(child), Link { seq, part }))
            })
            .collect(),
    }
}

fn event_from_v4(e: EventV4) -> Option<Event> {
    Some(Event {
        seq: e.seq,
        kind: *KINDS.get(usize::from(e.kind))?,
        outcome: match e.outcome {
            Some(o) => Some(*OUTCOMES.get(usize::from(o))?),
            None => None,
        },
        started_ms: e.started_ms,
        duration_ms: e.duration_ms,
        old_pid: e.old_pid,
        new_pid: e.new_pid,
        path: e.path,
        reason: e.reason,
        steps: e
            .steps
            .map(|[opened_ms, hello_ms, ready_ms, old_gone_ms]| Steps {
                opened_ms,
                hello_ms,
                ready_ms,
                old_gone_ms,
            }),
        connections: e
            .connections
            .map(|[moved, moved_back, closed]| Connections {
                moved,
                moved_back,
                closed,
            }),
        count: e.count,
        // Version 5 adds it.
        state: None,
    })
}

fn tally_v4(tally: &Tally) -> TallyV4 {
    TallyV4 {
        reloads_failed: tally.reloads_failed,
        reloads_rolled_back: tally.reloads_rolled_back,
        exits: tally.exits,
        reload_ms: (tally.reload_ms.counts.clone(), tally.reload_ms.sum),
        moved: tally.moved,
        http: (tally.http.iter())
            .map(|(name, t)| {
                let d = &t.durations;
                (name.clone(), t.codes, d.counts.clone(), d.sum)
            })
            .collect(),
        reports: (tally.reports.iter())
            .map(|(child, reports)| (child.0, reports.values().map(counts_v4).collect()))
            .collect(),
    }
}

fn counts_v4(c: &HttpCounts) -> HttpCountsV4 {
    HttpCountsV4 {
        listener: c.listener.clone(),
        codes: c.codes,
        bounds_us: c.bounds_us.clone(),
        buckets: c.buckets.clone(),
        sum_us: c.sum_us,
        open: c.open,
    }
}

fn tally_from_v4(v4: TallyV4) -> Tally {
    let fresh = Tally::default();
    // Counts per bucket of another length than this release's would misplace them:
    // they are left out (the totals they add to stay).
    let buckets = |counts: Vec<u64>, sum: u64, like: &Buckets| Buckets {
        counts: if counts.len() == like.counts.len() {
            counts
        } else {
            like.counts.clone()
        },
        sum,
    };
    Tally {
        reloads_failed: v4.reloads_failed,
        reloads_rolled_back: v4.reloads_rolled_back,
        exits: v4.exits,
        reload_ms: buckets(v4.reload_ms.0, v4.reload_ms.1, &fresh.reload_ms),
        moved: v4.moved,
        http: (v4.http.into_iter())
            .map(|(name, codes, counts, sum)| {
                let like = HttpTotals::default();
                let durations = buckets(counts, sum, &like.durations);
                (name, HttpTotals { codes, durations })
            })
            .collect(),
        reports: (v4.reports.into_iter())
            .map(|(child, reports)| {
                let by_listener: BTreeMap<String, HttpCounts> = (reports.into_iter())
                    .map(|c| {
                        let counts = HttpCounts {
                            listener: c.listener,
                            codes: c.codes,
                            bounds_us: c.bounds_us,
                            buckets: c.buckets,
                            sum_us: c.sum_us,
                            open: c.open,
                        };
                        (counts.listener.clone(), counts)
                    })
                    .collect();
                (ChildId(child), by_listener)
            })
            .collect(),
    }
}

/// The state's journal and counts, written in version 4's layout and read back: the
/// machine's tests check after every step that they are the same.
#[cfg(test)]
pub(crate) fn journal_through_v4(state: &crate::supervisor::machine::State) -> (Journal, Tally) {
    let bytes = postcard::to_stdvec(&(journal_v4(&state.journal), tally_v4(&state.tally)))
        .expect("the journal serializes");
    let (journal, tally): (JournalV4, TallyV4) =
        postcard::from_bytes(&bytes).expect("and reads back");
    (journal_from_v4(journal), tally_from_v4(tally))
}
