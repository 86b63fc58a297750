//! Where the supervisor is in its life: one flat enum, each variant a real situation
//! holding exactly what that situation needs.
//!
//! ```text
//!            ┌────────── Serving ◄──────────┐ child_gone: fallback
//!  restart   │   │ begin_reload     promote │
//! BackingOff─┘   ▼                          │
//!   ▲  ▲      Reloading ── reload_failed ──►(what served before)
//!   │  │         │ promote (an upgrade's reload)
//!   │  │         ▼
//!   │  │      Upgrading ── upgrade_failed / resumed ──►(what serves)
//!   │  │         ▲ pass (an upgrade's reload)
//!   │  │  Probation ── pass ──► Serving (the new child)
//!   │  │         └─── fail ──► Serving (the old child, warm), or Reloading (cold)
//!   │  └─ child_gone: persist
//! Idle (dev mode: child_gone, or a first child that could not start)
//!
//! any of these ── begin_stop / stop_now ──► Stopping ── check_done ──► Ending ── ► Done
//! ```
//!
//! Children are not in here: they are in one table keyed by [`ChildId`]
//! ([`State::children`](super::State::children)), and a variant names the ones it
//! cares about by id. A child no variant names is winding down. Deadlines are not in
//! here either: they are in the timer table ([`super::timers`]).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::supervisor::state::{ListenerRecord, ProgramRecord};

use super::child::Exit;
use super::{ChildId, ClientId, Time};

/// The supervisor's situation.
// One value in one place for the supervisor's life: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum Lifecycle {
    /// A child serves, or is starting to (its life says which); nothing else is under
    /// way.
    Serving { child: ChildId },
    /// Persist: the program is started again when [`Timer::Restart`] is due.
    ///
    /// [`Timer::Restart`]: super::timers::Timer::Restart
    BackingOff { program: ProgramRecord },
    /// Dev mode: no child serves (the last one exited, or could not start); the
    /// listeners stay open and the next build, SIGHUP or reload starts one.
    Idle { program: ProgramRecord },
    /// A reload of the child, or an upgrade's first step.
    Reloading(Reload),
    /// An upgrade whose child has been reloaded: the new binary is asked whether it can
    /// take over the supervisor, then the supervisor re-executes as it.
    Upgrading(Upgrade),
    /// A reloaded child is ready and on probation ([`Timer::Probation`]): it serves,
    /// the old one stands by (or has wound down), and the reload's verdict waits.
    ///
    /// [`Timer::Probation`]: super::timers::Timer::Probation
    Probation(Trial),
    /// Every child winds down; the supervisor ends when none is left.
    Stopping(Stop),
    /// Every child is gone and the listeners are closed; what the service left
    /// behind (descendants that left its process groups) is being ended. The stop is
    /// answered once that is done.
    Ending { waiters: Vec<ClientId>, code: i32 },
    /// Stopped with this exit code.
    Done { code: i32 },
}

impl Lifecycle {
    /// Whether the supervisor is stopping, ending or done: nothing starts any more.
    pub(crate) fn stopping(&self) -> bool {
        matches!(
            self,
            Lifecycle::Stopping(_) | Lifecycle::Ending { .. } | Lifecycle::Done { .. }
        )
    }
}

/// What serves while a reload or an upgrade is under way, and what it goes back to
/// if that ends without a new child.
#[derive(Clone, Debug)]
pub(crate) enum Slot {
    /// This child serves (or is starting to).
    Child(ChildId),
    /// Persist: the program was to be started again at `at`; it waits for what is
    /// under way to end, and starts then (at `at` at the earliest).
    BackingOff { program: ProgramRecord, at: Time },
    /// The serving child exited during a reload; what follows depends on the reload.
    Exited {
        program: ProgramRecord,
        pid: u32,
        exit: Exit,
        was_ready: bool,
    },
    /// Dev mode: no child serves.
    Idle { program: ProgramRecord },
}

impl Slot {
    /// The program of a slot that holds no child (a child's is in the table).
    pub(crate) fn program(&self) -> Option<&ProgramRecord> {
        match self {
            Slot::Child(_) => None,
            Slot::BackingOff { program, .. }
            | Slot::Exited { program, .. }
            | Slot::Idle { program } => Some(program),
        }
    }
}

/// Why a reload was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReloadKind {
    /// A client's `reload`, or SIGHUP.
    Asked,
    /// Dev mode: a build landed; its outcome is one `dev:` line.
    Build,
    /// The first step of a client's `upgrade`: once the new child is ready, the
    /// supervisor becomes its binary too ([`Lifecycle::Upgrading`]).
    Upgrade,
    /// A failed probation with no child standing by: the previous binary starts again
    /// (cold), and the new child serves until it is ready.
    Rollback,
}

/// A reload under way.
#[derive(Clone, Debug)]
pub(crate) struct Reload {
    pub waiter: Option<ClientId>,
    pub since: Time,
    pub kind: ReloadKind,
    /// What served when it began.
    pub old: Slot,
    pub incoming: Incoming,
    /// Reloads asked for while this one was being prepared: each is refused once this
    /// one's child has started (naming it), or started if this one fails first.
    pub queued: Vec<Asked>,
    /// Dev mode: a build landed meanwhile; it reloads once this one has ended.
    pub build_pending: bool,
    /// A cold rollback's: why the probation failed, for the verdict.
    pub rollback: Option<Cold>,
}

/// A cold rollback under way ([`ReloadKind::Rollback`]).
#[derive(Clone, Debug)]
pub(crate) struct Cold {
    /// Why the probation failed, as the verdict says it.
    pub why: String,
    /// How long the probation had run.
    pub after_ms: u64,
    /// The client that ran `rollback`, if one did.
    pub by: Option<ClientId>,
    /// The program a failing child falls back to, as before the reload.
    pub previous: Option<ProgramRecord>,
}

/// A reloaded child on probation.
#[derive(Clone, Debug)]
pub(crate) struct Trial {
    /// Who asked for the reload: it hears the verdict.
    pub waiter: Option<ClientId>,
    /// A reload, or an upgrade's first step (the supervisor re-executes once it passes).
    pub kind: ReloadKind,
    /// The child on probation; it serves.
    pub new: ChildId,
    pub old_pid: Option<u32>,
    /// The reload's own time, from the request to the new child ready.
    pub ms: u64,
    /// When the probation began.
    pub began: Time,
    /// What a failed probation goes back to.
    pub back: Back,
    /// The fallback program and the listeners as before the reload: a rollback
    /// restores them.
    pub previous: Option<ProgramRecord>,
    pub listeners: Vec<ListenerRecord>,
}

/// What a failed probation goes back to.
#[derive(Clone, Debug)]
pub(crate) enum Back {
    /// The old child, standing by: it is resumed (warm).
    Standby(ChildId),
    /// No child stands by: the previous binary is started again (cold), if fallback
    /// is on.
    Cold(ProgramRecord),
}

/// The new child of a reload.
#[derive(Clone, Debug)]
pub(crate) enum Incoming {
    /// The binary is being opened and the listeners bound.
    Preparing,
    /// An upgrade's binary, opened, while it is asked whether it could take over the
    /// supervisor (an [`Effect::Probe`](super::Effect::Probe)) before its child
    /// starts: a binary that could not changes nothing.
    Vetting {
        program: ProgramRecord,
        listeners: Vec<ListenerRecord>,
    },
    /// Its child runs.
    Child(ChildId),
}

/// A reload as it was asked for.
#[derive(Clone, Debug)]
pub(crate) struct Asked {
    pub waiter: Option<ClientId>,
    pub path: PathBuf,
    pub args: Option<Vec<OsString>>,
    pub overrides: Vec<(String, String)>,
}

/// An upgrade whose child has been reloaded: the supervisor is next.
#[derive(Clone, Debug)]
pub(crate) struct Upgrade {
    pub waiter: Option<ClientId>,
    /// The binary the supervisor becomes (the new child's).
    pub program: ProgramRecord,
    /// The child's reload: old and new pid, and how long it took.
    pub old_pid: Option<u32>,
    pub new_pid: u32,
    pub ms: u64,
    pub step: UpgradeStep,
    /// The newest upgrade state version the binary reads (known once it has answered
    /// the probe; 1 until then): with 2, the re-execution need not wait for the old
    /// children to have handed every connection over.
    pub next_reads: u16,
    /// The newest protocol of the supervisor that began the upgrade.
    pub from: u16,
    /// What serves meanwhile (the new child, unless it has exited since).
    pub serving: Slot,
    /// Dev mode: a build landed meanwhile; it reloads once the upgrade has ended.
    pub build_pending: bool,
}

/// Where an [`Upgrade`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpgradeStep {
    /// The new binary is asked whether it can take over
    /// ([`Effect::Probe`](super::Effect::Probe)).
    Probing,
    /// It can: the supervisor re-executes ([`Effect::Exec`](super::Effect::Exec)),
    /// once the next image can go on with the connections moving between children
    /// (what that takes depends on [`Upgrade::next_reads`]; [`Timer::Exec`] at the
    /// latest).
    ///
    /// [`Timer::Exec`]: super::timers::Timer::Exec
    Exec,
}

/// A stop under way.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    pub waiters: Vec<ClientId>,
    /// The child that served when the stop came: its exit code is the stop's.
    pub serving: Option<ChildId>,
    /// The new child of the reload that the stop cancelled.
    pub cancelled: Option<ChildId>,
    pub code: Option<i32>,
}
