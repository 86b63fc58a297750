//! The counts behind the metrics: what the supervisor counts of itself, and the HTTP
//! helpers' counts that its children report, added up so that they never go back.
//!
//! A child reports what it counted since it started ([`ChildMsg::Counts`]); the tally
//! adds the increase since that child's last report to its totals, so a reload, a
//! crash or an upgrade never makes a count go back. What a child counted after its last
//! report before it died is lost; nothing else is. The connections open are the
//! children's own last word, and leave with them. The tally is part of the state an
//! upgrade hands over (state version 4).
//!
//! [`ChildMsg::Counts`]: crate::control::protocol::ChildMsg::Counts

use std::collections::BTreeMap;

use crate::control::protocol::{HTTP_DURATION_BOUNDS_US, HttpCounts};

use super::ChildId;

/// The upper bounds of the buckets of `littleboss_reload_duration_seconds`, in ms.
pub(crate) const RELOAD_BOUNDS_MS: [u64; 13] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000,
];

/// The most listeners the HTTP totals keep, the longest listener name and the most
/// duration buckets a report may have: what a child says is bounded, so that a child
/// cannot grow the supervisor's memory (a listener name is short, and a program has a
/// few).
const MAX_LISTENERS: usize = 64;
const MAX_NAME: usize = 128;
const MAX_BUCKETS: usize = 64;

/// How a child ended, as `littleboss_child_exits_total{cause}` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// It exited with a code.
    Exited,
    /// A signal ended it that the supervisor did not send.
    Signaled,
    /// The supervisor killed it.
    Killed,
}

#[cfg(feature = "metrics")]
impl Cause {
    pub(crate) const ALL: [Cause; 3] = [Cause::Exited, Cause::Signaled, Cause::Killed];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cause::Exited => "exited",
            Cause::Signaled => "signaled",
            Cause::Killed => "killed",
        }
    }
}

/// A histogram's counts: one per bucket (not cumulative), then one above every bound,
/// and the sum of what was observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Buckets {
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl Buckets {
    fn new(bounds: usize) -> Buckets {
        Buckets {
            counts: vec![0; bounds + 1],
            sum: 0,
        }
    }

    /// Observes `value` against `bounds`.
    fn observe(&mut self, bounds: &[u64], value: u64) {
        let at = bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(bounds.len());
        if let Some(count) = self.counts.get_mut(at) {
            *count += 1;
        }
        self.sum = self.sum.saturating_add(value);
    }

    #[cfg(any(test, feature = "metrics"))]
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One listener's HTTP totals, over every child that served it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpTotals {
    /// Responses by status class, `1xx` to `5xx`.
    pub codes: [u64; 5],
    /// Durations in microseconds, against [`HTTP_DURATION_BOUNDS_US`].
    pub durations: Buckets,
}

impl Default for HttpTotals {
    fn default() -> HttpTotals {
        HttpTotals {
            codes: [0; 5],
            durations: Buckets::new(HTTP_DURATION_BOUNDS_US.len()),
        }
    }
}

/// Everything the metrics count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Reloads that failed (the new child never became ready, or its binary could not
    /// be prepared), and that were rolled back (a failed probation). Those that
    /// succeeded are the state's `reloads`.
    pub reloads_failed: u64,
    pub reloads_rolled_back: u64,
    /// Children that ended, by [`Cause`].
    pub exits: [u64; 3],
    /// Each reload's time from its request to its new child ready, in ms.
    pub reload_ms: Buckets,
    /// Connections a child took from another.
    pub moved: u64,
    /// The HTTP helpers' totals, by listener.
    pub http: BTreeMap<String, HttpTotals>,
    /// Each live child's last report, by listener.
    pub reports: BTreeMap<ChildId, BTreeMap<String, HttpCounts>>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            reloads_failed: 0,
            reloads_rolled_back: 0,
            exits: [0; 3],
            reload_ms: Buckets::new(RELOAD_BOUNDS_MS.len()),
            moved: 0,
            http: BTreeMap::new(),
            reports: BTreeMap::new(),
        }
    }
}

impl Tally {
    pub(crate) fn exited(&mut self, cause: Cause) {
        self.exits[cause as usize] += 1;
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn exits_of(&self, cause: Cause) -> u64 {
        self.exits[cause as usize]
    }

    /// A reload's new child was ready `ms` after it was asked for.
    pub(crate) fn reload_took(&mut self, ms: u64) {
        self.reload_ms.observe(&RELOAD_BOUNDS_MS, ms);
    }

    /// `child` reports what it counted since it started: the increase since its last
    /// report goes to the totals. A count lower than the last one (which a child does
    /// not send) adds nothing. A report past the bounds (a listener name over
    /// [`MAX_NAME`] bytes, more than [`MAX_BUCKETS`] buckets, a listener beyond the
    /// first [`MAX_LISTENERS`]) is left out.
    pub(crate) fn report(&mut self, child: ChildId, counts: Vec<HttpCounts>) {
        let known = self.http.len();
        let last = self.reports.entry(child).or_default();
        let mut new_listeners = 0;
        for now in counts {
            let fits = now.listener.len() <= MAX_NAME
                && now.buckets.len() <= MAX_BUCKETS
                && now.bounds_us.len() <= MAX_BUCKETS;
            let is_new = !self.http.contains_key(&now.listener);
            if !fits || (is_new && known + new_listeners >= MAX_LISTENERS) {
                continue;
            }
            new_listeners += usize::from(is_new);
            let before = last.get(&now.listener);
            let totals = self.http.entry(now.listener.clone()).or_default();
            for (i, total) in totals.codes.iter_mut().enumerate() {
                let was = before.map_or(0, |b| b.codes[i]);
                *total += now.codes[i].saturating_sub(was);
            }
            let was = before.map(folded).unwrap_or_default();
            let is = folded(&now);
            for (i, total) in totals.durations.counts.iter_mut().enumerate() {
                let (a, b) = (was.counts.get(i), is.counts.get(i));
                *total += b
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(a.copied().unwrap_or(0));
            }
            totals.durations.sum += is.sum.saturating_sub(was.sum);
            last.insert(now.listener.clone(), now);
        }
    }

    /// `child` is gone: its connections are no longer open.
    pub(crate) fn forget(&mut self, child: ChildId) {
        self.reports.remove(&child);
    }

    /// The connections open on `listener`, by the live children's last reports.
    #[cfg(any(test, feature = "metrics"))]
    pub(crate) fn open(&self, listener: &str) -> u64 {
        (self.reports.values())
            .filter_map(|r| r.get(listener))
            .map(|c| c.open)
            .sum()
    }
}

/// A report's durations in this release's buckets: a child that counts with other
/// bounds has each of its buckets counted in the first of ours that holds its bound.
fn folded(counts: &HttpCounts) -> Buckets {
    let ours = &HTTP_DURATION_BOUNDS_US;
    let mut out = Buckets::new(ours.len());
    out.sum = counts.sum_us;
    for (i, n) in counts.buckets.iter().enumerate() {
        let bound = counts.bounds_us.get(i).copied().unwrap_or(u64::MAX);
        let at = ours.iter().position(|b| bound <= *b).unwrap_or(ours.len());
        out.counts[at] += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(ok: u64, errors: u64, open: u64) -> HttpCounts {
        let mut buckets = vec![0; HTTP_DURATION_BOUNDS_US.len() + 1];
        buckets[0] = ok + errors;
        HttpCounts {
            listener: "http".into(),
            codes: [0, ok, 0, 0, errors],
            bounds_us: HTTP_DURATION_BOUNDS_US.to_vec(),
            buckets,
            sum_us: (ok + errors) * 100,
            open,
        }
    }

    #[test]
    fn counts_add_up_across_children_and_never_go_back() {
        let mut tally = Tally::default();
        tally.report(ChildId(1), vec![counts(10, 1, 3)]);
        tally.report(ChildId(1), vec![counts(15, 1, 2)]);
        // A new child starts from zero: its counts add to the totals.
        tally.report(ChildId(2), vec![counts(4, 0, 5)]);
        assert_eq!(tally.http["http"].codes, [0, 19, 0, 0, 1]);
        assert_eq!(tally.http["http"].durations.total(), 20);
        assert_eq!(tally.http["http"].durations.sum, 2000);
        assert_eq!(tally.open("http"), 7);
        tally.forget(ChildId(1));
        assert_eq!(tally.open("http"), 5);
        // A report lower than the last adds nothing.
        tally.report(ChildId(2), vec![counts(1, 0, 1)]);
        assert_eq!(tally.http["http"].codes, [0, 19, 0, 0, 1]);
    }

    #[test]
    fn what_a_child_reports_is_bounded() {
        let mut tally = Tally::default();
        let named = |name: String| HttpCounts {
            listener: name,
            ..counts(1, 0, 0)
        };
        let many: Vec<HttpCounts> = (0..100).map(|i| named(format!("l{i}"))).collect();
        tally.report(ChildId(1), many);
        assert_eq!(tally.http.len(), MAX_LISTENERS);
        let mut huge = named("x".repeat(MAX_NAME + 1));
        tally.report(ChildId(2), vec![huge.clone()]);
        huge.listener = "l0".into();
        huge.buckets = vec![1; MAX_BUCKETS + 1];
        tally.report(ChildId(2), vec![huge]);
        assert_eq!(tally.http.len(), MAX_LISTENERS);
        assert_eq!(tally.http["l0"].codes, [0, 1, 0, 0, 0]);
        // A known listener is still counted.
        tally.report(ChildId(2), vec![named("l1".into())]);
        assert_eq!(tally.http["l1"].codes, [0, 2, 0, 0, 0]);
    }

    #[test]
    fn other_bounds_are_folded_into_ours() {
        let mut tally = Tally::default();
        let mut odd = counts(0, 0, 0);
        odd.bounds_us = vec![1_000, 7_000];
        odd.buckets = vec![2, 3, 4];
        odd.codes = [0, 9, 0, 0, 0];
        tally.report(ChildId(1), vec![odd]);
        let counts = &tally.http["http"].durations.counts;
        assert_eq!((counts[0], counts[1], counts[11]), (2, 3, 4));
    }

    #[test]
    fn reload_durations_fall_in_their_buckets() {
        let mut tally = Tally::default();
        for ms in [5, 10, 11, 200_000] {
            tally.reload_took(ms);
        }
        assert_eq!(tally.reload_ms.counts[0], 2);
        assert_eq!(tally.reload_ms.counts[1], 1);
        assert_eq!(tally.reload_ms.counts[RELOAD_BOUNDS_MS.len()], 1);
        assert_eq!(tally.reload_ms.sum, 200_026);
    }
}
