//! [`Error`]: what went wrong, as a program that embeds littleboss can tell apart.
//!
//! The command line prints each failure as it always has (`littleboss: ...`, `reload
//! of NAME failed: ...`) and exits with its code; a program that calls
//! [`Littleboss::try_run`](crate::Littleboss::try_run) gets the same failure as an
//! `Error` instead, and can tell a busy port from a bad flag or a refused reload.

use std::fmt;
use std::io;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::spec::Network;

/// A failure of littleboss: what it is, and what it was about.
///
/// Its `Display` is the text littleboss prints for it (without the `littleboss: NAME:`
/// prefix). It converts into an [`io::Error`] of the kind below, which keeps the
/// `Error` inside (reachable through [`io::Error::get_ref`] and `downcast_ref`), so
/// that `?` works in a `main` that returns `std::io::Result`:
///
/// | variant | [`io::ErrorKind`] |
/// |---|---|
/// | [`Config`](Error::Config) | `InvalidInput` |
/// | [`Bind`](Error::Bind) | the bind's own (`AddrInUse`, `PermissionDenied`, ...) |
/// | [`Listener`](Error::Listener) | by [`ListenerProblem`]: `NotFound`, `InvalidInput`, `AlreadyExists`, `NotConnected`, `AddrInUse`, `Other` |
/// | [`ControlSocket`](Error::ControlSocket) | the socket's own (`NotFound`, `ConnectionRefused`, `PermissionDenied`, ...) |
/// | [`Timeout`](Error::Timeout) | `TimedOut` |
/// | [`Refused`](Error::Refused) | `Other` |
/// | [`Init`](Error::Init) | `Other` |
/// | [`Protocol`](Error::Protocol) | `Unsupported` |
/// | [`Io`](Error::Io) | the operation's own |
///
/// ```
/// fn port_busy(e: &std::io::Error) -> bool {
///     matches!(
///         e.get_ref().and_then(|e| e.downcast_ref::<littleboss::Error>()),
///         Some(littleboss::Error::Bind { .. })
///     ) && e.kind() == std::io::ErrorKind::AddrInUse
/// }
/// # let _ = port_busy;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// What the program declares, its command line or its environment cannot be
    /// accepted: a bad flag, name, duration or listener spec, a relative
    /// `LITTLEBOSS_DIR`.
    #[error("{message}")]
    Config {
        /// What is wrong, and what would be accepted.
        message: String,
    },
    /// A listener could not be bound.
    #[error("bind {listener} on {address}: {source}")]
    Bind {
        /// The listener's name.
        listener: String,
        /// The address it was to be bound to, as given.
        address: String,
        /// Why not, with what to do about it.
        #[source]
        source: io::Error,
    },
    /// A listener the program asked its [`Context`](crate::Context) for cannot be
    /// given.
    #[error("{}", listener_text(.listener, .problem))]
    Listener {
        /// The name asked for.
        listener: String,
        /// Why it cannot be given.
        problem: ListenerProblem,
    },
    /// The supervisor's control socket (or its directory) could not be used: none is
    /// running, another is, or the path is not safe. The text names the path where it
    /// helps.
    #[error("{source}")]
    ControlSocket {
        /// The control socket's path.
        path: PathBuf,
        /// What happened there.
        #[source]
        source: io::Error,
    },
    /// Something did not happen in time.
    #[error("no answer from the supervisor within {} s ({operation})", .within.as_secs())]
    Timeout {
        /// What was being waited for.
        operation: String,
        /// How long it was waited for.
        within: Duration,
    },
    /// The supervisor said no: a reload or upgrade failed, or a request it cannot do.
    #[error("{reason}")]
    Refused {
        /// The supervisor's words.
        reason: String,
    },
    /// The supervisor and this binary have no protocol version in common.
    #[error(
        "the running supervisor speaks littleboss protocol {}, this binary speaks {}",
        range(.theirs),
        range(.ours)
    )]
    Protocol {
        /// The versions this binary speaks.
        ours: RangeInclusive<u16>,
        /// The versions the supervisor speaks.
        theirs: RangeInclusive<u16>,
    },
    /// The program's [`supervisor_init`](crate::Littleboss::supervisor_init) returned
    /// an error: the supervisor did not start.
    #[error("supervisor init failed: {message}")]
    Init {
        /// The error, as [`MainResult`](crate::MainResult) shows it.
        message: String,
    },
    /// An operation on the system failed.
    #[error("{operation}: {source}")]
    Io {
        /// What was being done.
        operation: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// Why a [`Context`](crate::Context) cannot give a listener: see [`Error::Listener`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenerProblem {
    /// No listener of that name is declared.
    Undeclared {
        /// The names that are.
        declared: Vec<String>,
    },
    /// The listener is of another kind than the accessor's (`udp_socket` of a TCP
    /// listener).
    WrongKind {
        /// The listener's network.
        network: Network,
        /// The kind the accessor gives: `TCP`, `UDP` or `unix`.
        wanted: &'static str,
    },
    /// It was taken already: each listener can be taken once.
    Taken,
    /// It is off: its spec or flag gives no address.
    Off,
    /// The supervisor serves its metrics on it (`metrics = "NAME"`): the program never
    /// gets it.
    Supervisor,
    /// The async accessor was called outside a tokio runtime.
    NoRuntime,
}

impl Error {
    /// The [`io::ErrorKind`] this error converts to (see the table on [`Error`]).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Config { .. } => io::ErrorKind::InvalidInput,
            Error::Bind { source, .. }
            | Error::ControlSocket { source, .. }
            | Error::Io { source, .. } => source.kind(),
            Error::Listener { problem, .. } => match problem {
                ListenerProblem::Undeclared { .. } => io::ErrorKind::NotFound,
                ListenerProblem::WrongKind { .. } => io::ErrorKind::InvalidInput,
                ListenerProblem::Taken => io::ErrorKind::AlreadyExists,
                ListenerProblem::Off => io::ErrorKind::NotConnected,
                ListenerProblem::Supervisor => io::ErrorKind::AddrInUse,
                ListenerProblem::NoRuntime => io::ErrorKind::Other,
            },
            Error::Timeout { .. } => io::ErrorKind::TimedOut,
            Error::Refused { .. } | Error::Init { .. } => io::ErrorKind::Other,
            Error::Protocol { .. } => io::ErrorKind::Unsupported,
        }
    }

    pub(crate) fn config(message: impl fmt::Display) -> Error {
        Error::Config {
            message: message.to_string(),
        }
    }

    pub(crate) fn io(operation: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            operation: operation.into(),
            source,
        }
    }
}

impl From<Error> for io::Error {
    /// An `io::Error` of [`Error::kind`] that keeps the `Error` inside.
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// A failure as the command line reports it: the [`Error`] that
/// [`try_run`](crate::Littleboss::try_run) returns, and what
/// [`run`](crate::Littleboss::run) prints and exits with instead, word for word as
/// littleboss has always printed it.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: Error,
    /// The whole text for stderr, its lines ended by newlines.
    pub(crate) text: String,
    pub(crate) code: u8,
}

impl Failed {
    /// `error`, printed as the line `line` (a newline is added), exiting with `code`.
    pub(crate) fn new(error: Error, line: impl fmt::Display, code: u8) -> Failed {
        Failed {
            error,
            text: format!("{line}\n"),
            code,
        }
    }

    /// The same, with more lines after the first (`more` ends with its own newline).
    pub(crate) fn with_more(mut self, more: impl fmt::Display) -> Failed {
        self.text.push_str(&more.to_string());
        self
    }

    /// Prints the text and gives the exit code: what `run` does with a failure.
    pub(crate) fn report(self) -> std::process::ExitCode {
        crate::output::err!("{}", self.text);
        std::process::ExitCode::from(self.code)
    }
}

fn range(r: &RangeInclusive<u16>) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{}-{}", r.start(), r.end())
    }
}

fn listener_text(name: &str, problem: &ListenerProblem) -> String {
    match problem {
        ListenerProblem::Undeclared { declared } => {
            let list = if declared.is_empty() {
                "none are declared".to_string()
            } else {
                format!("the declared listeners are {}", declared.join(", "))
            };
            format!("no listener named {name:?}; {list}")
        }
        ListenerProblem::WrongKind { network, wanted } => format!(
            "listener {name:?} is {} ({network}), not {wanted}",
            network.kind().as_str()
        ),
        ListenerProblem::Taken => {
            format!("listener {name:?} was taken already; each listener can be taken once")
        }
        ListenerProblem::Off => {
            format!("listener {name:?} is off (no address; give one with --{name}=ADDR)")
        }
        ListenerProblem::Supervisor => format!(
            "listener {name:?} is the supervisor's metrics listener (metrics = {name:?}): a supervisor serves it, the program never gets it, and in bypass mode it is not bound"
        ),
        ListenerProblem::NoRuntime => format!(
            "listener {name:?}: no tokio runtime is running here; use an async main, or the std_ accessor"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_its_kind_and_itself_inside_an_io_error() {
        let busy = Error::Bind {
            listener: "http".into(),
            address: ":80".into(),
            source: io::Error::new(io::ErrorKind::AddrInUse, "address in use"),
        };
        let text = busy.to_string();
        assert_eq!(text, "bind http on :80: address in use");
        let io: io::Error = busy.into();
        assert_eq!(io.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(io.to_string(), text);
        let inner = io.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert!(matches!(inner, Some(Error::Bind { listener, .. }) if listener == "http"));
        let source = std::error::Error::source(inner.unwrap()).unwrap();
        assert_eq!(source.to_string(), "address in use");
    }

    #[test]
    fn each_listener_problem_says_what_to_do() {
        let cases = [
            (
                ListenerProblem::Undeclared {
                    declared: vec!["http".into(), "spare".into()],
                },
                "no listener named \"htp\"; the declared listeners are http, spare",
                io::ErrorKind::NotFound,
            ),
            (
                ListenerProblem::Undeclared { declared: vec![] },
                "no listener named \"htp\"; none are declared",
                io::ErrorKind::NotFound,
            ),
            (
                ListenerProblem::WrongKind {
                    network: Network::Udp,
                    wanted: "TCP",
                },
                "listener \"htp\" is UDP (udp), not TCP",
                io::ErrorKind::InvalidInput,
            ),
            (
                ListenerProblem::Taken,
                "listener \"htp\" was taken already; each listener can be taken once",
                io::ErrorKind::AlreadyExists,
            ),
            (
                ListenerProblem::Off,
                "listener \"htp\" is off (no address; give one with --htp=ADDR)",
                io::ErrorKind::NotConnected,
            ),
            (
                ListenerProblem::Supervisor,
                "listener \"htp\" is the supervisor's metrics listener (metrics = \"htp\"): a supervisor serves it, the program never gets it, and in bypass mode it is not bound",
                io::ErrorKind::AddrInUse,
            ),
            (
                ListenerProblem::NoRuntime,
                "listener \"htp\": no tokio runtime is running here; use an async main, or the std_ accessor",
                io::ErrorKind::Other,
            ),
        ];
        for (problem, text, kind) in cases {
            let e = Error::Listener {
                listener: "htp".into(),
                problem,
            };
            assert_eq!(e.to_string(), text);
            assert_eq!(e.kind(), kind, "{text}");
        }
    }

    #[test]
    fn a_protocol_error_names_both_ranges() {
        let e = Error::Protocol {
            ours: 2..=3,
            theirs: 1..=1,
        };
        assert_eq!(
            e.to_string(),
            "the running supervisor speaks littleboss protocol 1, this binary speaks 2-3"
        );
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn errors_cross_threads() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
