//! The supervisor's log lines travel through a bounded queue to a thread of their own,
//! so that a log reader that stalls (a stuck collector, a full pipe, `| less` left
//! paused) never stalls the supervisor: when the queue is full, lines are dropped and
//! counted, and `N log lines dropped` is written as soon as the writer has room again.

use crate::output::errln;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How much a message matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Level {
    /// The supervisor's ordinary work: a child started, ready, reloaded, stopped.
    Info,
    /// Something failed or was refused: a reload, a control connection.
    Warn,
}

/// Lines that may wait for the writer. Each is one short message, so this is a few
/// hundred KiB at most; a writer that is that far behind is stuck, not slow.
const CAPACITY: usize = 1024;

/// One line to write: its level, the service, the text (and with the `tracing`
/// feature, the span of the reload it was said during, if any).
#[derive(Debug)]
pub(crate) struct Line {
    pub level: Level,
    pub name: String,
    pub message: String,
    #[cfg(feature = "tracing")]
    pub span: Option<tracing::Span>,
}

/// Where the writer thread sends each line (it may block there; nobody waits for it).
pub(crate) type Sink = Box<dyn Fn(&Line) + Send + Sync>;

/// The queue and the counts the writer and [`LogQueue::flush`] share.
#[derive(Debug, Default)]
pub(crate) struct LogQueue {
    sender: OnceLock<Option<SyncSender<Line>>>,
    shared: std::sync::Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    /// Lines queued and lines written, for `flush`.
    progress: Mutex<(u64, u64)>,
    written: Condvar,
}

impl LogQueue {
    /// Queues `line`, starting the writer (with `sink`) on first use. Never blocks on
    /// the writer: a full queue drops the line and counts it. If no thread can be
    /// started, the line is written here, as it would be without the queue.
    pub(crate) fn push(&self, line: Line, sink: impl FnOnce() -> Sink) {
        let sender = self.sender.get_or_init(|| self.start(sink()));
        let Some(sender) = sender else {
            return self.write_here(line);
        };
        lock(&self.shared.progress).0 += 1;
        match sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                lock(&self.shared.progress).0 -= 1;
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits, at most `limit`, until every queued line has been written: at exit, so
    /// that the last lines are not lost, unless the reader is stuck.
    pub(crate) fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut progress = lock(&self.shared.progress);
        while progress.1 < progress.0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            progress = match self.shared.written.wait_timeout(progress, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Lines dropped so far and not yet reported.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn start(&self, sink: Sink) -> Option<SyncSender<Line>> {
        let (sender, receiver) = mpsc::sync_channel(CAPACITY);
        let shared = std::sync::Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("littleboss-log".to_string())
            .spawn(move || {
                // A supervisor's signals are its loop's (see `signals`).
                crate::signals::block(true);
                write_all(&receiver, &sink, &shared)
            })
            .ok()
            .map(|_| sender)
    }

    /// Without a writer thread, as before: on stderr, here.
    fn write_here(&self, line: Line) {
        errln!("littleboss: {}: {}", line.name, line.message);
    }
}

/// The writer thread: every line, and after each, the count of those dropped meanwhile.
fn write_all(receiver: &Receiver<Line>, sink: &Sink, shared: &Shared) {
    for line in receiver {
        sink(&line);
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            sink(&Line {
                level: Level::Warn,
                name: line.name.clone(),
                message: dropped_message(dropped),
                #[cfg(feature = "tracing")]
                span: None,
            });
        }
        lock(&shared.progress).1 += 1;
        shared.written.notify_all();
    }
}

/// `N log lines dropped`.
pub(crate) fn dropped_message(n: u64) -> String {
    let lines = if n == 1 { "line" } else { "lines" };
    format!("{n} log {lines} dropped")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn line(message: &str) -> Line {
        Line {
            level: Level::Info,
            name: "svc".to_string(),
            message: message.to_string(),
            #[cfg(feature = "tracing")]
            span: None,
        }
    }

    /// A writer stuck in its sink costs the caller nothing: pushes return at once, the
    /// lines beyond the queue are dropped and counted, and the count is written once the
    /// sink is free again.
    #[test]
    fn a_stuck_writer_drops_and_counts_lines() {
        let queue = LogQueue::default();
        let gate = Arc::new(Mutex::new(()));
        let written = Arc::new(Mutex::new(Vec::<String>::new()));
        let held = lock(&gate);
        let sink = {
            let gate = Arc::clone(&gate);
            let written = Arc::clone(&written);
            move || -> Sink {
                Box::new(move |line: &Line| {
                    drop(lock(&gate));
                    lock(&written).push(line.message.clone());
                })
            }
        };
        let t0 = Instant::now();
        let total = CAPACITY + 500;
        for i in 0..total {
            queue.push(line(&format!("line {i}")), sink.clone());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "pushes did not block"
        );
        // The writer holds one line (blocked in the sink) and the queue the next ones.
        let dropped = queue.dropped();
        assert!((499..=500).contains(&dropped), "dropped {dropped}");
        drop(held);
        queue.flush(Duration::from_secs(10));
        let written = lock(&written).clone();
        assert_eq!(
            written.len() as u64,
            total as u64 - dropped + 1,
            "{written:?}"
        );
        assert_eq!(written[0], "line 0");
        assert_eq!(written[1], dropped_message(dropped));
        assert_eq!(dropped_message(1), "1 log line dropped");
    }

    #[test]
    fn flush_returns_when_the_writer_is_stuck() {
        let queue = LogQueue::default();
        let gate = Arc::new(Mutex::new(()));
        let held = lock(&gate);
        let sink = {
            let gate = Arc::clone(&gate);
            move || -> Sink { Box::new(move |_: &Line| drop(lock(&gate))) }
        };
        queue.push(line("stuck"), sink);
        let t0 = Instant::now();
        queue.flush(Duration::from_millis(200));
        assert!(t0.elapsed() < Duration::from_secs(5));
        drop(held);
        queue.flush(Duration::from_secs(10));
    }
}
