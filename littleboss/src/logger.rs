//! Where the supervisor's own messages go: `littleboss: NAME: ...` lines on stderr by
//! default, the `log` or `tracing` facade with the features of those names, or a
//! function the program gives ([`Littleboss::log_with`](crate::Littleboss::log_with)).

use std::fmt;
use std::sync::Arc;

/// How much a message matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Level {
    /// The supervisor's ordinary work: a child started, ready, reloaded, stopped.
    Info,
    /// Something failed or was refused: a reload, a control connection.
    Warn,
}

/// The program's choice of where messages go.
pub(crate) type LogFn = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// Sends supervisor messages where the program asked.
#[derive(Clone, Default)]
pub(crate) struct Logger {
    custom: Option<LogFn>,
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
        Logger { custom }
    }

    /// Logs `message` about service `name`.
    pub(crate) fn log(&self, level: Level, name: &str, message: &str) {
        if let Some(custom) = &self.custom {
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
            errln!("littleboss: {name}: {message}");
        }
    }
}
