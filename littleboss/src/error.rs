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
/// | [`State`](Error::State) | by [`StateProblem`]: `InvalidInput`, `ResourceBusy`, `AlreadyExists`, `NotConnected`, `InvalidData`, `Other` |
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
    /// A program's state could not be given to the process that replaces it, or taken
    /// from the one it replaces (state transfer: [`Context::take_state`],
    /// [`Context::state_wanted`](crate::Context::state_wanted)).
    ///
    /// [`Context::take_state`]: crate::Context::take_state
    #[error("{problem}")]
    State {
        /// What went wrong.
        problem: StateProblem,
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

/// Why a state could not be given or taken: see [`Error::State`].
///
/// A program usually starts cold on any of them; the ones worth telling apart are
/// [`Version`](StateProblem::Version) (a state of another format: the program decides
/// whether to start cold or refuse to become ready) and the limits a giver broke.
///
/// ```
/// use littleboss::{Error, StateProblem};
/// fn another_format(e: &Error) -> Option<(u32, u32)> {
///     match e {
///         Error::State { problem: StateProblem::Version { found, wanted } } => Some((*found, *wanted)),
///         _ => None,
///     }
/// }
/// # let _ = another_format;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateProblem {
    /// [`take_state`](crate::Context::take_state) in a program that does not declare
    /// `calls_ready = true`.
    NeedsCallsReady,
    /// [`take_state`](crate::Context::take_state) after
    /// [`ready`](crate::Context::ready).
    AfterReady,
    /// [`take_state`](crate::Context::take_state) while an earlier call still waits.
    Waiting,
    /// [`take_state`](crate::Context::take_state) again: the state is taken once.
    Taken,
    /// [`ready`](crate::Context::ready) was called while
    /// [`take_state`](crate::Context::take_state) waited: the transfer is void.
    ReadyWhileWaiting,
    /// No state came, and why: the process replaced did not answer in time, could not
    /// give it, or exited before it had given it all.
    NotGiven {
        /// The reason, as the supervisor or the process replaced said it.
        reason: String,
    },
    /// The supervisor went away before the state came.
    SupervisorGone,
    /// What came is not a state as it must be: a file not sealed, or not of the size
    /// its message said; fds that do not match their names.
    Malformed {
        /// What is wrong.
        what: String,
    },
    /// This process ran out of fds (its fd limit) while it received the state's.
    OutOfFds,
    /// [`take_value`](crate::Inherited::take_value): the state is of another format
    /// version than the one asked for.
    Version {
        /// The version the state says.
        found: u32,
        /// The version the program reads.
        wanted: u32,
    },
    /// [`take_value`](crate::Inherited::take_value): the state does not decode as the
    /// type asked for.
    Decode {
        /// Why.
        reason: String,
    },
    /// [`give_value`](crate::StateRequest::give_value): the value cannot be encoded.
    Encode {
        /// Why.
        reason: String,
    },
    /// The state given is larger than a state may be (4 GiB; what a slice holds on
    /// a 32-bit target).
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
    /// The state given carries more fds than a state may (1,024).
    TooManyFds {
        /// How many.
        count: usize,
    },
    /// A name given to an fd of the state cannot be: empty, longer than 255 bytes, or
    /// given twice.
    FdName {
        /// The name (its start, if it is long).
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The new process that asked for the state is gone: its reload failed or was
    /// rolled back, or it stopped waiting. Nothing was sent.
    SuccessorGone,
    /// [`Given::update`](crate::Given::update) while this process neither stands by
    /// nor winds down.
    UpdateTooEarly,
    /// [`Given::update`](crate::Given::update) again: the later snapshot is given once.
    UpdatedAlready,
}

impl fmt::Display for StateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::control::protocol::{MAX_STATE_BYTES, MAX_STATE_FDS};
        match self {
            StateProblem::NeedsCallsReady => f.write_str(
                "take_state needs calls_ready = true: a program ready after its settle time could be declared ready while it waits for its state",
            ),
            StateProblem::AfterReady => f.write_str(
                "take_state after ready(): the state is taken before ready(); a later snapshot comes through state_updated()",
            ),
            StateProblem::Waiting => {
                f.write_str("take_state is waiting for the state already; call it once")
            }
            StateProblem::Taken => {
                f.write_str("take_state was called before: the state is taken once")
            }
            StateProblem::ReadyWhileWaiting => f.write_str(
                "ready() was called while take_state waited: the state is taken before ready(), and this transfer is void",
            ),
            StateProblem::NotGiven { reason } => f.write_str(reason),
            StateProblem::SupervisorGone => {
                f.write_str("the supervisor went away before the state came")
            }
            StateProblem::Malformed { what } => f.write_str(what),
            StateProblem::OutOfFds => f.write_str(
                "the state's fds could not all be received: this process is out of fds (its fd limit)",
            ),
            StateProblem::Version { found, wanted } => write!(
                f,
                "the state is format version {found}; this program reads version {wanted}"
            ),
            StateProblem::Decode { reason } => {
                write!(f, "the state does not decode as the type asked for: {reason}")
            }
            StateProblem::Encode { reason } => write!(f, "the state cannot be encoded: {reason}"),
            StateProblem::TooLarge { size } => {
                write!(f, "the state is {size} bytes; at most {MAX_STATE_BYTES}")
            }
            StateProblem::TooManyFds { count } => {
                write!(f, "the state carries {count} fds; at most {MAX_STATE_FDS}")
            }
            StateProblem::FdName { name, why } => write!(f, "the state's fd {name:?} {why}"),
            StateProblem::SuccessorGone => f.write_str(
                "the new process that asked for the state is gone (its reload failed or was rolled back, or it stopped waiting)",
            ),
            StateProblem::UpdateTooEarly => f.write_str(
                "a later snapshot is given while this process stands by or winds down, once its successor is ready",
            ),
            StateProblem::UpdatedAlready => {
                f.write_str("a later snapshot was given already; it is given once")
            }
        }
    }
}

impl StateProblem {
    /// The [`io::ErrorKind`] of an [`Error::State`] with this problem.
    fn kind(&self) -> io::ErrorKind {
        match self {
            StateProblem::NeedsCallsReady
            | StateProblem::AfterReady
            | StateProblem::Encode { .. }
            | StateProblem::TooLarge { .. }
            | StateProblem::TooManyFds { .. }
            | StateProblem::FdName { .. }
            | StateProblem::UpdateTooEarly => io::ErrorKind::InvalidInput,
            StateProblem::Waiting => io::ErrorKind::ResourceBusy,
            StateProblem::Taken | StateProblem::UpdatedAlready => io::ErrorKind::AlreadyExists,
            StateProblem::SupervisorGone | StateProblem::SuccessorGone => {
                io::ErrorKind::NotConnected
            }
            StateProblem::Malformed { .. }
            | StateProblem::Version { .. }
            | StateProblem::Decode { .. } => io::ErrorKind::InvalidData,
            StateProblem::ReadyWhileWaiting
            | StateProblem::NotGiven { .. }
            | StateProblem::OutOfFds => io::ErrorKind::Other,
        }
    }
}

impl From<StateProblem> for Error {
    fn from(problem: StateProblem) -> Error {
        Error::State { problem }
    }
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
            Error::State { problem } => problem.kind(),
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
    fn a_state_problem_says_what_it_is_and_keeps_its_kind() {
        let cases = [
            (
                StateProblem::Version {
                    found: 3,
                    wanted: 4,
                },
                "the state is format version 3; this program reads version 4",
                io::ErrorKind::InvalidData,
            ),
            (
                StateProblem::TooManyFds { count: 1025 },
                "the state carries 1025 fds; at most 1024",
                io::ErrorKind::InvalidInput,
            ),
            (
                StateProblem::NotGiven {
                    reason: "the process it replaces, pid 7, did not give its state within 5 s"
                        .into(),
                },
                "the process it replaces, pid 7, did not give its state within 5 s",
                io::ErrorKind::Other,
            ),
            (
                StateProblem::Waiting,
                "take_state is waiting for the state already; call it once",
                io::ErrorKind::ResourceBusy,
            ),
            (
                StateProblem::SuccessorGone,
                "the new process that asked for the state is gone (its reload failed or was rolled back, or it stopped waiting)",
                io::ErrorKind::NotConnected,
            ),
        ];
        for (problem, text, kind) in cases {
            let e = Error::from(problem);
            assert_eq!(e.to_string(), text);
            let io = io::Error::from(e);
            assert_eq!(io.kind(), kind, "{text}");
            let inner = io.get_ref().and_then(|e| e.downcast_ref::<Error>());
            assert!(matches!(inner, Some(Error::State { .. })));
        }
    }

    #[test]
    fn errors_cross_threads() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
