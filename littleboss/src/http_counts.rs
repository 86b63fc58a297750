//! What the HTTP helpers count for the supervisor's metrics (with the `metrics`
//! feature; without it nothing is counted): per listener, the responses by status
//! class, their durations and the connections open.
//!
//! The counts only grow for the process's life; the [`Context`](crate::Context)
//! reports them whole (not their increase) over the channel at most every
//! [`REPORT_EVERY`] while they change, and once more at exit, and the supervisor adds
//! the increase since the last report to totals that outlive every process.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::control::protocol::{HTTP_DURATION_BOUNDS_US, HttpCounts};

/// How often, at most, the counts are reported.
pub(crate) const REPORT_EVERY: Duration = Duration::from_millis(100);

const BUCKETS: usize = HTTP_DURATION_BOUNDS_US.len() + 1;

/// One listener's counts.
#[derive(Debug, Default)]
pub(crate) struct ListenerCounts {
    codes: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    open: AtomicU64,
    /// Bumped at every change, so that an unchanged listener is not reported again.
    changes: AtomicU64,
}

impl ListenerCounts {
    /// A response of `status`, `took` after its request came.
    pub(crate) fn observe(&self, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.codes[class].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let at = (HTTP_DURATION_BOUNDS_US.iter())
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS - 1);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// A connection is open until the guard is dropped.
    pub(crate) fn opened(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(1, Ordering::Release);
        OpenGuard(Arc::clone(self))
    }

    /// How many changes so far.
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The counts, as the channel carries them.
    pub(crate) fn snapshot(&self, listener: &str) -> HttpCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpCounts {
            listener: listener.to_string(),
            codes: self.codes.each_ref().map(load),
            bounds_us: HTTP_DURATION_BOUNDS_US.to_vec(),
            buckets: self.buckets.iter().map(load).collect(),
            sum_us: load(&self.sum_us),
            open: load(&self.open),
        }
    }
}

/// A connection open, counted until dropped.
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<ListenerCounts>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.changes.fetch_add(1, Ordering::Release);
    }
}

/// `connection`, counted as open (on `counts`, if any) until it ends.
pub(crate) async fn open_while<F: Future>(counts: Option<Arc<ListenerCounts>>, connection: F) {
    let _open = counts.as_ref().map(ListenerCounts::opened);
    connection.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_fall_in_their_class_and_bucket() {
        let counts = Arc::new(ListenerCounts::default());
        counts.observe(200, Duration::from_millis(1));
        counts.observe(204, Duration::from_millis(7));
        counts.observe(503, Duration::from_secs(20));
        counts.observe(99, Duration::ZERO);
        let open = counts.opened();
        let shot = counts.snapshot("http");
        assert_eq!(shot.codes, [1, 2, 0, 0, 1]);
        assert_eq!(shot.buckets[0], 2);
        assert_eq!(shot.buckets[1], 1);
        assert_eq!(shot.buckets[BUCKETS - 1], 1);
        assert_eq!(shot.open, 1);
        let before = counts.changes();
        drop(open);
        assert_eq!(counts.snapshot("http").open, 0);
        assert!(counts.changes() > before);
    }
}
