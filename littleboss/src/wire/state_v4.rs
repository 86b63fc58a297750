//! The upgrade state of version 4: version 3 followed by the journal and the counts
//! behind the metrics (pinned in `littleboss/tests/golden/upgrade-state.txt`).
//!
//! Both must cross an upgrade: the journal's numbers never repeat for the supervisor's
//! life, and a counter that went back at an upgrade would read as a reset to every
//! scraper. From version 3 (an upgrade from an older release) both start anew. As with
//! the versions before, these types are the layout and nothing else; the bytes of a
//! [`HandoverV4`] are those of its [`HandoverV3`] followed by a [`JournalV4`] and a
//! [`TallyV4`].

use serde::{Deserialize, Serialize};

use super::state_v3::HandoverV3;

/// The whole handover of version 4.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandoverV4 {
    pub(crate) v3: HandoverV3,
    pub(crate) journal: JournalV4,
    pub(crate) tally: TallyV4,
}

/// The journal: its events, oldest first, the next event's number, the event under
/// way and which child has what part in which event.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalV4 {
    pub(crate) events: Vec<EventV4>,
    pub(crate) next_seq: u64,
    pub(crate) under_way: Option<u64>,
    /// `(child id, event number, part)`: part 0 new, 1 old, 2 rolled back.
    pub(crate) links: Vec<(u64, u64, u8)>,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventV4 {
    pub(crate) seq: u64,
    /// 0 reload, 1 upgrade, 2 restart, 3 fallback, 4 exit, 5 stop, 6 promote,
    /// 7 rollback.
    pub(crate) kind: u8,
    /// 0 succeeded, 1 failed, 2 rolled back.
    pub(crate) outcome: Option<u8>,
    pub(crate) started_ms: u64,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) old_pid: Option<u32>,
    pub(crate) new_pid: Option<u32>,
    pub(crate) path: Option<String>,
    pub(crate) reason: Option<String>,
    /// Opened, hello, ready, old gone, in ms from the start.
    pub(crate) steps: Option<[Option<u64>; 4]>,
    /// Moved, moved back, closed.
    pub(crate) connections: Option<[u64; 3]>,
    pub(crate) count: Option<u64>,
}

/// The counts behind the metrics.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TallyV4 {
    pub(crate) reloads_failed: u64,
    pub(crate) reloads_rolled_back: u64,
    /// Exited, signaled, killed.
    pub(crate) exits: [u64; 3],
    /// Reload durations: a count per bucket and the sum, in ms.
    pub(crate) reload_ms: (Vec<u64>, u64),
    pub(crate) moved: u64,
    /// `(listener, codes 1xx to 5xx, counts per duration bucket, sum in µs)`.
    pub(crate) http: Vec<(String, [u64; 5], Vec<u64>, u64)>,
    /// Each live child's last report: `(child id, reports)`.
    pub(crate) reports: Vec<(u64, Vec<HttpCountsV4>)>,
}

/// A child's report of one listener, as protocol 5's `Counts` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HttpCountsV4 {
    pub(crate) listener: String,
    pub(crate) codes: [u64; 5],
    pub(crate) bounds_us: Vec<u64>,
    pub(crate) buckets: Vec<u64>,
    pub(crate) sum_us: u64,
    pub(crate) open: u64,
}
