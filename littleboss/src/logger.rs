//! Where the supervisor's own messages go: `littleboss: NAME: ...` lines on stderr by
//! default, the `log` or `tracing` facade with the features of those names, or a
//! function the program gives ([`Littleboss::log_with`](crate::Littleboss::log_with)).
//!
//! Whichever it is, the line is written by a thread of its own behind a bounded queue
//! ([`log_queue`](crate::log_queue)): the supervisor never waits for its log.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use crate::log_queue::Level;
use crate::log_queue::{Line, LogQueue, Sink};

/// The program's choice of where messages go.
pub(crate) type LogFn = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// Sends supervisor messages where the program asked, through the queue.
#[derive(Clone, Default)]
pub(crate) struct Logger {
    custom: Option<LogFn>,
    queue: Arc<LogQueue>,
    /// The span of the reload under way (`littleboss.reload`), which every line
    /// queued meanwhile carries.
    #[cfg(feature = "tracing")]
    span: Arc<std::sync::Mutex<Option<tracing::Span>>>,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl Logger {
    pub(crate) fn new(custom: Option<LogFn>) -> Logger {
        Logger {
            custom,
            queue: Arc::default(),
            #[cfg(feature = "tracing")]
            span: Arc::default(),
        }
    }

    /// The lines queued from now on belong to `span` (a reload's), or to none.
    #[cfg(feature = "tracing")]
    pub(crate) fn within(&self, span: Option<tracing::Span>) {
        *self
            .span
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = span;
    }

    /// Logs `message` about service `name`: queues it for the writer thread, which is
    /// started on the first line (so only a process that logs has one).
    pub(crate) fn log(&self, level: Level, name: &str, message: &str) {
        let line = Line {
            level,
            name: name.to_string(),
            message: message.to_string(),
            #[cfg(feature = "tracing")]
            span: (self.span.lock())
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        };
        self.queue.push(line, || {
            let custom = self.custom.clone();
            Box::new(move |line: &Line| write(custom.as_ref(), line)) as Sink
        });
    }

    /// Waits, at most `limit`, for the queued lines to be written (before exiting).
    pub(crate) fn flush(&self, limit: Duration) {
        self.queue.flush(limit);
    }
}

/// Writes one line where the program asked; on the writer thread.
fn write(custom: Option<&LogFn>, line: &Line) {
    let Line {
        level,
        name,
        message,
        ..
    } = line;
    let level = *level;
    if let Some(custom) = custom {
        return custom(level, &format!("{name}: {message}"));
    }
    #[cfg(feature = "tracing")]
    {
        // Under the reload's span, if it was said during one.
        let parent = line.span.as_ref().and_then(tracing::Span::id);
        match level {
            Level::Info => {
                tracing::info!(target: "littleboss", parent: parent, service = name, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "littleboss", parent: parent, service = name, "{message}")
            }
        }
    }
    #[cfg(all(feature = "log", not(feature = "tracing")))]
    {
        let level = match level {
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
        };
        log::log!(target: "littleboss", level, "{name}: {message}");
    }
    #[cfg(not(any(feature = "log", feature = "tracing")))]
    {
        let _ = level;
        crate::output::errln!("littleboss: {name}: {message}");
    }
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata};

    use super::*;

    /// A subscriber that keeps the spans' names and each event's explicit parent.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Recorded>);

    #[derive(Default)]
    struct Recorded {
        next: AtomicU64,
        spans: Mutex<Vec<(u64, &'static str)>>,
        parents: Mutex<Vec<Option<u64>>>,
    }

    impl tracing::Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let id = self.0.next.fetch_add(1, Ordering::SeqCst) + 1;
            let name = span.metadata().name();
            self.0
                .spans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((id, name));
            Id::from_u64(id)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let parent = event.parent().map(Id::into_u64);
            self.0
                .parents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(parent);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn the_lines_said_during_a_reload_have_its_span_as_parent() {
        let recorder = Recorder::default();
        tracing::subscriber::with_default(recorder.clone(), || {
            let logger = Logger::new(None);
            let line = |logger: &Logger| Line {
                level: Level::Info,
                name: "svc".into(),
                message: "reloading".into(),
                span: logger
                    .span
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            };
            let span = tracing::info_span!(target: "littleboss", "littleboss.reload", seq = 7);
            logger.within(Some(span));
            write(None, &line(&logger));
            logger.within(None);
            write(None, &line(&logger));
        });
        let spans = recorder
            .0
            .spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        assert_eq!(spans, vec![(1, "littleboss.reload")]);
        let parents = recorder
            .0
            .parents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        assert_eq!(parents, vec![Some(1), None]);
    }
}
