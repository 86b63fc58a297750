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
        }
    }

    /// Logs `message` about service `name`: queues it for the writer thread, which is
    /// started on the first line (so only a process that logs has one).
    pub(crate) fn log(&self, level: Level, name: &str, message: &str) {
        let line = Line {
            level,
            name: name.to_string(),
            message: message.to_string(),
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
    } = line;
    let level = *level;
    if let Some(custom) = custom {
        return custom(level, &format!("{name}: {message}"));
    }
    #[cfg(feature = "tracing")]
    {
        match level {
            Level::Info => tracing::info!(target: "littleboss", service = name, "{message}"),
            Level::Warn => tracing::warn!(target: "littleboss", service = name, "{message}"),
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
