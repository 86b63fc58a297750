//! One child as the machine knows it: where it is in its life, and how it ended.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use crate::control::protocol::{PANICKED, Probation};
use crate::supervisor::state::{ListenerRecord, ProgramRecord};

use super::tally::Cause;
use super::timers::Timer;
use super::{ChildId, Time};

/// Where a child is in its life. A child that has exited is not here: it is reaped and
/// forgotten in the same step. Each life that waits for something has its deadline in
/// the timer table ([`Life::timer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    /// The shell was asked to start it; its pid is not known yet.
    Spawning,
    /// Started; its hello is due ([`Timer::Hello`]).
    Started,
    /// Welcomed (it has its listeners); ready once it has run its settle time
    /// ([`Timer::Settled`]).
    Settling,
    /// Welcomed; it must call `ready()` in time ([`Timer::Ready`]).
    AwaitingReady,
    /// Ready: it serves, or would.
    Ready,
    /// Ready, and standing by while a new child is on probation: it does not accept,
    /// and serves again if the new one fails (no deadline: the probation's is the
    /// lifecycle's).
    Standby,
    /// Asked to wind down; killed after its lameduck time ([`Timer::Kill`]). A child
    /// asked before its hello is welcomed first (it waits for its listeners), then told.
    Lameduck { welcomed: bool },
    /// Its process group was sent SIGKILL; its exit is what is left. `ready`: it was
    /// ready when it was killed (for breaking the protocol, say): its exit is that of
    /// a ready child that crashed, and fallback or persist apply.
    Killed { ready: bool },
}

impl Life {
    /// The deadline a child of this life has, if any.
    pub(crate) fn timer(self, id: ChildId) -> Option<Timer> {
        match self {
            Life::Started => Some(Timer::Hello(id)),
            Life::Settling => Some(Timer::Settled(id)),
            Life::AwaitingReady => Some(Timer::Ready(id)),
            Life::Lameduck { .. } => Some(Timer::Kill(id)),
            Life::Spawning | Life::Ready | Life::Standby | Life::Killed { .. } => None,
        }
    }
}

/// A child process the supervisor started.
#[derive(Clone, Debug)]
pub(crate) struct Child {
    pub id: ChildId,
    /// 0 until the shell reports the spawn.
    pub pid: u32,
    pub program: ProgramRecord,
    /// The whole command line the child got (the program's, with the listener flags).
    pub argv: Vec<OsString>,
    pub listeners: Vec<ListenerRecord>,
    /// Wall-clock start, for `status`.
    pub started: Option<SystemTime>,
    /// Monotonic start, for how long it ran.
    pub started_at: Time,
    pub life: Life,
    /// How long it may take to wind down: the supervisor's default until its hello
    /// says otherwise.
    pub lameduck_ms: u64,
    pub killed_because: Option<String>,
    pub finished: Option<Result<(), String>>,
    /// What its hello declared of the probation after a reload to it (none from a
    /// child of protocol 3 or before).
    pub probation: Probation,
    /// Whether it failed its probation: it winds down, handing its connections back.
    pub rolled_back: bool,
    /// What it said of its health before it was ready (`unhealthy`): a probation of its
    /// fails as soon as it begins.
    pub unwell: Option<String>,
    /// Whether it said it can stand by ([`ChildMsg::CanStandBy`]).
    ///
    /// [`ChildMsg::CanStandBy`]: crate::control::protocol::ChildMsg::CanStandBy
    pub stands_by: bool,
}

impl Child {
    /// Whether it is ready (and not winding down or killed).
    pub(crate) fn is_ready(&self) -> bool {
        self.life == Life::Ready
    }

    /// Whether it was ready when it ended up where it is: ready now, or killed while
    /// ready. A serving child that exits having been ready falls back.
    pub(crate) fn was_ready(&self) -> bool {
        matches!(
            self.life,
            Life::Ready | Life::Standby | Life::Killed { ready: true }
        )
    }

    /// Whether it has said hello and been given its listeners.
    pub(crate) fn welcomed(&self) -> bool {
        match self.life {
            Life::Spawning | Life::Started => false,
            Life::Lameduck { welcomed } => welcomed,
            Life::Settling
            | Life::AwaitingReady
            | Life::Ready
            | Life::Standby
            | Life::Killed { .. } => true,
        }
    }
}

/// How a process ended, as `waitid` reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    Code(i32),
    Signal(i32),
    /// Neither (should not happen).
    Unknown,
}

/// How a child ended.
#[derive(Clone, Debug)]
pub(crate) struct Exit {
    pub status: WaitStatus,
    /// Why the supervisor killed it, if it did.
    pub killed_because: Option<String>,
    pub ran: Duration,
    /// What its main reported before exiting (`Finished`), if anything.
    pub finished: Option<Result<(), String>>,
}

impl Exit {
    /// The exit code the supervisor passes on: the child's, or 1 for a signal.
    pub(crate) fn code(&self) -> i32 {
        match self.status {
            WaitStatus::Code(code) => code,
            WaitStatus::Signal(_) | WaitStatus::Unknown => 1,
        }
    }

    /// How it ended, as the metrics count it.
    pub(crate) fn cause(&self) -> Cause {
        match (&self.killed_because, self.status) {
            (Some(_), _) => Cause::Killed,
            (None, WaitStatus::Signal(_)) => Cause::Signaled,
            (None, WaitStatus::Code(_) | WaitStatus::Unknown) => Cause::Exited,
        }
    }

    /// Whether it ended badly (non-zero, a signal, or killed by the supervisor).
    pub(crate) fn failed(&self) -> bool {
        self.killed_because.is_some() || self.status != WaitStatus::Code(0)
    }

    /// `exited with code 101 before it was ready`, `was killed before it was ready: it
    /// is service "other", not "svc"`, ...: a new build that failed, as dev mode says it.
    pub(crate) fn before_ready(&self) -> String {
        let mut text = match (&self.killed_because, self.status) {
            (Some(why), _) => format!("was killed before it was ready: {why}"),
            (None, WaitStatus::Code(code)) => {
                format!("exited with code {code} before it was ready")
            }
            (None, WaitStatus::Signal(sig)) => {
                format!("was killed by signal {sig} before it was ready")
            }
            (None, WaitStatus::Unknown) => "ended before it was ready".to_string(),
        };
        text.push_str(&self.what_main_said());
        text
    }

    /// ` (its main returned an error: ...)`, ` (its main panicked at src/main.rs:4:5:
    /// boom)`, or nothing.
    fn what_main_said(&self) -> String {
        match &self.finished {
            Some(Err(e)) if e.starts_with(PANICKED) => format!(" (its main {e})"),
            Some(Err(e)) => format!(" (its main returned an error: {e})"),
            _ => String::new(),
        }
    }

    /// `exited with code 101`, `was killed by signal 9`, with what its main said: how
    /// a child on probation ended, as the verdict says it.
    pub(crate) fn how_it_ended(&self) -> String {
        let mut text = self.how();
        text.push_str(&self.what_main_said());
        text
    }

    /// `exited with code 101`, `was killed: WHY`, ...
    fn how(&self) -> String {
        match (&self.killed_because, self.status) {
            (Some(why), _) => format!("was killed: {why}"),
            (None, WaitStatus::Code(code)) => format!("exited with code {code}"),
            (None, WaitStatus::Signal(sig)) => format!("was killed by signal {sig}"),
            (None, WaitStatus::Unknown) => "ended".to_string(),
        }
    }

    /// `exited with code 3 after 120 ms`, `killed by signal 9 after 2.1 s`, ...
    pub(crate) fn describe(&self) -> String {
        let how = self.how();
        // A deadline's reason says how long it waited already.
        let mut text = match &self.killed_because {
            Some(why) if why.contains(" within ") => how,
            _ => format!("{how} after {}", human_duration(self.ran)),
        };
        text.push_str(&self.what_main_said());
        text
    }
}

/// A timeout as it was declared: `500 ms`, `30 s`, `1.5 s` (to the tenth of a second,
/// so that the few milliseconds a deadline is seen late do not show).
pub(crate) fn human_timeout(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{} ms", d.as_millis());
    }
    let text = format!("{:.1}", d.as_secs_f64());
    format!("{} s", text.strip_suffix(".0").unwrap_or(&text))
}

/// `120 ms`, `2.1 s`.
pub(crate) fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
