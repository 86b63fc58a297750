//! The supervisor's decisions, with no I/O: it takes an [`Input`] and the time, and
//! hands back [`Effect`]s for the shell to carry out.
//!
//! Everything that decides is here; the shell ([`super::shell`]) only turns sockets,
//! signals, exits and timers into inputs, and effects into system calls. Time is a
//! plain number of milliseconds on a monotonic clock ([`Time`]); clients and children
//! are ids, so the whole [`State`] is a value that can be serialized. The one timer is
//! [`Machine::next_deadline`]: the shell sleeps until then and calls
//! [`Machine::handle_timeout`], as quinn-proto's `poll_timeout` / `handle_timeout` do.
//!
//! The phase carries its data ([`Phase`]), so the rules hold by construction:
//!
//! - nothing starts while stopping: [`Phase::Stopping`] holds no serving or incoming
//!   child, only children winding down;
//! - at most one serving and one incoming child: [`Phase::Up`] has one
//!   [`Current`] and at most one [`Reload`];
//! - every child that was started is in exactly one place until its exit, when its
//!   process group is killed and then it is reaped, in that order, once.
//!
//! In dev mode ([`Settings::dev`]) a build that lands ([`Input::BuildLanded`]) is a
//! reload of the serving program's path, and only a stop ends the supervisor: a child
//! that exits leaves [`Current::Idle`]. A build that lands during a reload is kept in
//! [`State::build_pending`], never without a reload under way.

mod child;
mod moves;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use littleboss_rules::wait::until_ready;

use crate::control::protocol::{
    ChildMsg, Parcel, ReloadRequest, Request, Response, Status, SupervisorMsg, Upgraded, Versions,
};
use crate::logger::Level;
use crate::supervisor::state::{FdKey, ListenerRecord, ProgramRecord, listeners_shown, rfc3339};

pub(crate) use child::{Child, Exit, Life, WaitStatus, human_duration, human_timeout};
use moves::Moving;

/// Milliseconds on the supervisor's monotonic clock (since it started).
pub(crate) type Time = u64;

/// A child the supervisor started, for as long as it is not reaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ChildId(pub u64);

/// A client waiting on the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ClientId(pub u64);

/// The first and the largest delay before a persistent program is started again.
const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 30_000;
/// A child that ran this long resets the backoff.
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// The longest settle, ready or lameduck time a child may declare in its hello: a
/// reload never waits on a child for longer than this.
pub(crate) const MAX_CHILD_WAIT_MS: u64 = littleboss_rules::wait::MAX_WAIT.as_secs() * 1000;

/// A time a child declared, in milliseconds, capped at [`MAX_CHILD_WAIT_MS`].
fn declared(ms: u64) -> u64 {
    ms.min(MAX_CHILD_WAIT_MS)
}

/// What the program declared that the machine needs.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub name: String,
    pub persist: bool,
    pub fallback: bool,
    /// A child's lameduck time until its hello says otherwise.
    pub lameduck_ms: u64,
    /// How long a child has to say hello.
    pub hello_timeout_ms: u64,
    /// `--littleboss=dev`: a new build at the program's path reloads
    /// ([`Input::BuildLanded`]), and a child that exits does not end the supervisor: it
    /// waits for the next build ([`Current::Idle`]) instead of restarting or falling back.
    pub dev: bool,
    /// The protocol versions this supervisor speaks.
    pub versions: Versions,
    /// The most connections on their way to the serving child at once ([`moves`]);
    /// more go back to their senders, which drain them.
    pub move_cap: usize,
    /// How long the serving child has to take a connection forwarded to it before it
    /// is recalled.
    pub take_ms: u64,
}

/// A signal the supervisor handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Term,
    Int,
    Hup,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
            Signal::Hup => "SIGHUP",
        }
    }
}

/// Something that happened.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    /// The child asked for by [`Effect::Spawn`] runs.
    Spawned {
        child: ChildId,
        pid: u32,
        started: SystemTime,
    },
    /// The child asked for by [`Effect::Spawn`] could not be started. `busy`: its
    /// executable is still open for writing (`ETXTBSY`), so in dev mode it is a build
    /// not yet complete, not a failed one.
    SpawnFailed {
        child: ChildId,
        reason: String,
        busy: bool,
    },
    /// A child sent a message (hello, ready, finished).
    Message {
        child: ChildId,
        msg: ChildMsg,
    },
    /// A child's channel failed, or it sent something that is not a message.
    ChannelFailed {
        child: ChildId,
        reason: String,
    },
    /// A child exited. It is not reaped yet: its pid (and so its process group id)
    /// cannot be reused until [`Effect::Reap`].
    Exited {
        child: ChildId,
        status: WaitStatus,
    },
    /// A client asked something.
    Request {
        client: ClientId,
        request: Request,
    },
    /// A client went away before its answer.
    ClientGone {
        client: ClientId,
    },
    /// The [`Effect::Prepare`] of the reload under way is done.
    Prepared {
        program: ProgramRecord,
        listeners: Vec<ListenerRecord>,
    },
    /// The [`Effect::Prepare`] of the reload under way failed; `counts` if it is a
    /// failure of the program (its binary), not of the request.
    PrepareFailed {
        reason: String,
        counts: bool,
    },
    Signal(Signal),
    /// Dev mode: a new build, complete, is at the serving program's path. It reloads
    /// that path with the same arguments, as SIGHUP does; during a reload it is kept
    /// (one, however many land) and reloads once that reload has ended.
    BuildLanded,
    /// The new binary's answer to [`Effect::Probe`]: it can take over the supervisor,
    /// or why not.
    Probed {
        result: Result<(), String>,
    },
    /// [`Effect::Exec`] did not happen; the supervisor runs on as it was.
    ExecFailed {
        reason: String,
    },
    /// The first input of a supervisor that an [`Effect::Exec`] started: it runs the
    /// new binary now, with the state of the one before.
    Resumed,
    /// [`Effect::EndDescendants`] is done: `ended` says whether every process the
    /// service left behind is gone (if one could not be ended, the exit code of a stop
    /// that would have been 0 is 1).
    DescendantsEnded {
        ended: bool,
    },
}

/// What systemd is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `READY=1` with a status line.
    Ready(String),
    /// `RELOADING=1` (the shell adds the clock).
    Reloading,
    /// `STOPPING=1`.
    Stopping,
}

/// Something the shell is to do.
#[derive(Clone, Debug)]
pub(crate) enum Effect {
    /// Start a child; answered by [`Input::Spawned`] or [`Input::SpawnFailed`].
    Spawn {
        child: ChildId,
        program: ProgramRecord,
        argv: Vec<OsString>,
    },
    /// Answer a child's hello with its listeners: their names and addresses, and the
    /// fds of those that are on, in order.
    Welcome {
        child: ChildId,
        listeners: Vec<ListenerRecord>,
    },
    /// Send a child a message that carries no fds (a refusal, lameduck).
    Send {
        child: ChildId,
        msg: SupervisorMsg,
    },
    /// SIGKILL to the child's process group.
    Kill {
        child: ChildId,
    },
    /// Reap the exited child and forget it.
    Reap {
        child: ChildId,
    },
    /// Open the executable at `path` and bind the listeners that `overrides` moves
    /// (off the loop: binding may resolve names); answered by [`Input::Prepared`] or
    /// [`Input::PrepareFailed`].
    Prepare {
        /// The client that asked, if any: it may have passed its executable as an fd.
        client: Option<ClientId>,
        path: PathBuf,
        args: Vec<OsString>,
        listeners: Vec<ListenerRecord>,
        overrides: Vec<(String, String)>,
    },
    Answer {
        client: ClientId,
        response: Response,
    },
    Notify(Notice),
    Log(Level, String),
    /// Close every listener and remove the control socket: every child is gone.
    Close,
    /// End what the service left behind (descendants that left its process groups),
    /// in the grace of the lameduck time; answered by [`Input::DescendantsEnded`].
    EndDescendants,
    /// Dev mode: the build that landed could not be started because it is still being
    /// written; the watch looks at it again once its writer is done (and reports it
    /// again as [`Input::BuildLanded`]).
    WatchBuildAgain,
    /// Run `program` (the upgrade's binary) as a probe that reads the state and says
    /// whether it can take over the supervisor; answered by [`Input::Probed`].
    Probe {
        program: ProgramRecord,
    },
    /// Re-execute the supervisor as `program`, handing it the state, every fd and the
    /// children; a new image answers with [`Input::Resumed`], a failure with
    /// [`Input::ExecFailed`].
    Exec {
        program: ProgramRecord,
    },
    /// Send `to` the connections that `from` handed over ([`SupervisorMsg::Adopt`]):
    /// each parcel with `from`'s id for its fd, and the supervisor's id it goes by now.
    Forward {
        from: ChildId,
        to: ChildId,
        parcels: Vec<(u64, Parcel)>,
    },
    /// Give `child` back the connections it handed over with these ids
    /// ([`SupervisorMsg::Returned`]), closing the supervisor's copies of any it holds.
    Return {
        child: ChildId,
        ids: Vec<u64>,
    },
}

/// The serving slot of [`Phase::Up`].
#[derive(Clone, Debug)]
pub(crate) enum Current {
    /// The child that serves (or is starting to, until it is ready).
    Child(Child),
    /// Persist: the program is started again at `at` (unless a reload is under way).
    Backoff { program: ProgramRecord, at: Time },
    /// The serving child exited while a reload was under way; what follows depends on
    /// the reload.
    Exited {
        program: ProgramRecord,
        pid: u32,
        exit: Exit,
        was_ready: bool,
    },
    /// Dev mode: no child serves (the last one exited, or could not start); the
    /// listeners stay open and the next build, SIGHUP or reload starts one.
    Idle { program: ProgramRecord },
}

impl Current {
    /// The program that serves, served last, or waits to be started again.
    fn program(&self) -> &ProgramRecord {
        match self {
            Current::Child(c) => &c.program,
            Current::Backoff { program, .. }
            | Current::Exited { program, .. }
            | Current::Idle { program } => program,
        }
    }
}

/// A reload under way.
#[derive(Clone, Debug)]
pub(crate) struct Reload {
    pub waiter: Option<ClientId>,
    pub since: Time,
    pub incoming: Incoming,
    /// Reloads asked for while this one was being prepared: each is refused once this
    /// one's child has started (naming it), or started if this one fails first.
    pub queued: Vec<Asked>,
    /// A reload to a build that landed (dev mode): its outcome is one `dev:` line.
    pub build: bool,
    /// The first step of an upgrade: once the new child is ready, the supervisor
    /// becomes its binary too ([`Upgrade`]).
    pub upgrade: bool,
    /// An upgrade's binary, opened, while it is asked whether it could take over the
    /// supervisor ([`Effect::Probe`]) before its child starts: a binary that could not
    /// changes nothing.
    pub vetting: Option<(ProgramRecord, Vec<ListenerRecord>)>,
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
    /// The newest protocol of the supervisor that began the upgrade.
    pub from: u16,
}

/// Where an [`Upgrade`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpgradeStep {
    /// The new binary is asked whether it can take over ([`Effect::Probe`]).
    Probing,
    /// It can: the supervisor re-executes ([`Effect::Exec`]).
    Exec,
}

/// A reload as it was asked for.
#[derive(Clone, Debug)]
pub(crate) struct Asked {
    pub waiter: Option<ClientId>,
    pub path: PathBuf,
    pub args: Option<Vec<OsString>>,
    pub overrides: Vec<(String, String)>,
}

/// The new child of a reload.
// One value in one place for the supervisor's life: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum Incoming {
    /// The binary is being opened and the listeners bound.
    Preparing,
    Child(Child),
}

/// Where the supervisor is in its life.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum Phase {
    /// Serving, starting, or reloading.
    Up {
        current: Current,
        reload: Option<Reload>,
    },
    /// Every child winds down; the supervisor ends when none is left.
    Stopping {
        waiters: Vec<ClientId>,
        /// The child that served when the stop came: its exit code is the stop's.
        serving: Option<ChildId>,
        /// The new child of the reload that the stop cancelled.
        cancelled: Option<ChildId>,
        code: Option<i32>,
    },
    /// Every child is gone and the listeners are closed; what the service left
    /// behind (descendants that left its process groups) is being ended
    /// ([`Effect::EndDescendants`]). The stop is answered once that is done.
    Ending { waiters: Vec<ClientId>, code: i32 },
    /// Stopped with this exit code.
    Done { code: i32 },
}

/// Everything the supervisor knows: one serializable value.
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub name: String,
    pub pid: u32,
    pub started: SystemTime,
    pub phase: Phase,
    /// Children winding down or killed, waiting for their exit.
    pub retiring: Vec<Child>,
    /// The listeners a new child gets.
    pub listeners: Vec<ListenerRecord>,
    /// The program a failing reloaded child falls back to.
    pub previous: Option<ProgramRecord>,
    pub reloads: u64,
    pub failures: u64,
    pub restarts: u64,
    /// The next restart's delay (persist).
    pub backoff_ms: u64,
    pub next_child: u64,
    /// Whether the first child has been reported started.
    pub announced: bool,
    /// Dev mode: a build landed during the reload under way; it reloads when that one
    /// ends.
    pub build_pending: bool,
    /// The executable the supervisor runs.
    pub supervisor_path: PathBuf,
    /// Times the supervisor re-executed itself as a new binary.
    pub upgrades: u64,
    /// The upgrade under way, once its child has been reloaded.
    pub upgrade: Option<Upgrade>,
}

impl State {
    /// The program that serves, or would (`None` once stopping).
    pub(crate) fn phase_program(&self) -> Option<ProgramRecord> {
        match &self.phase {
            Phase::Up { current, .. } => Some(current.program().clone()),
            Phase::Stopping { .. } | Phase::Ending { .. } | Phase::Done { .. } => None,
        }
    }
}

/// Where a child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Current,
    Incoming,
    Retiring(usize),
}

/// The supervisor's state machine.
#[derive(Debug)]
pub(crate) struct Machine {
    settings: Settings,
    state: State,
    effects: VecDeque<Effect>,
    /// Connections moving between children: not in the state an upgrade hands over.
    moves: Moving,
}

impl Machine {
    /// A supervisor that starts `program` with `listeners` at once.
    pub(crate) fn new(
        settings: Settings,
        pid: u32,
        started: SystemTime,
        listeners: Vec<ListenerRecord>,
        program: ProgramRecord,
        now: Time,
    ) -> Machine {
        let placeholder = Current::Backoff {
            program: program.clone(),
            at: now,
        };
        let mut machine = Machine {
            state: State {
                name: settings.name.clone(),
                pid,
                started,
                phase: Phase::Up {
                    current: placeholder,
                    reload: None,
                },
                retiring: Vec::new(),
                listeners,
                previous: None,
                reloads: 0,
                failures: 0,
                restarts: 0,
                backoff_ms: BACKOFF_MIN_MS,
                next_child: 0,
                announced: false,
                build_pending: false,
                supervisor_path: program.path.clone(),
                upgrades: 0,
                upgrade: None,
            },
            settings,
            effects: VecDeque::new(),
            moves: Moving::default(),
        };
        let child = machine.spawn(program, machine.state.listeners.clone(), now);
        machine.set_current(Current::Child(child));
        machine
    }

    /// A supervisor that an [`Effect::Exec`] started: the state of the one before, as
    /// it was; [`Input::Resumed`] comes first.
    pub(crate) fn resume(settings: Settings, state: State) -> Machine {
        Machine {
            settings,
            state,
            effects: VecDeque::new(),
            moves: Moving::default(),
        }
    }

    /// The whole state (for the handover of an upgrade).
    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// Whether an [`Effect::Exec`] is still wanted (nothing cancelled the upgrade).
    pub(crate) fn exec_wanted(&self) -> bool {
        matches!(
            (&self.state.phase, &self.state.upgrade),
            (
                Phase::Up { .. },
                Some(Upgrade {
                    step: UpgradeStep::Exec,
                    ..
                })
            )
        )
    }

    /// Every fd key the state refers to: the fds to keep.
    pub(crate) fn fd_keys(&self) -> BTreeSet<FdKey> {
        let mut keys = BTreeSet::new();
        let mut listeners = |set: &[ListenerRecord]| {
            keys.extend(
                set.iter()
                    .filter_map(|l| l.bound.as_ref().map(|(_, key)| *key)),
            );
        };
        listeners(&self.state.listeners);
        let mut exes: Vec<FdKey> = Vec::new();
        for child in self.children() {
            listeners(&child.listeners);
            exes.push(child.program.exe);
        }
        if let Phase::Up {
            current:
                Current::Backoff { program, .. }
                | Current::Exited { program, .. }
                | Current::Idle { program },
            ..
        } = &self.state.phase
        {
            exes.push(program.exe);
        }
        exes.extend(self.state.previous.iter().map(|p| p.exe));
        exes.extend(self.state.upgrade.iter().map(|u| u.program.exe));
        if let Phase::Up {
            reload:
                Some(Reload {
                    vetting: Some((program, vetted)),
                    ..
                }),
            ..
        } = &self.state.phase
        {
            exes.push(program.exe);
            listeners(vetted);
        }
        keys.extend(exes);
        keys
    }

    /// The next effect to carry out, in order.
    pub(crate) fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The exit code, once the supervisor is done.
    pub(crate) fn done(&self) -> Option<i32> {
        match self.state.phase {
            Phase::Done { code } => Some(code),
            _ => None,
        }
    }

    /// When [`Machine::handle_timeout`] is next due.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        let mut next = self
            .children()
            .filter_map(Child::deadline)
            .chain(self.moves.next_deadline())
            .min();
        if let Phase::Up {
            current: Current::Backoff { at, .. },
            reload: None,
        } = &self.state.phase
        {
            next = Some(next.map_or(*at, |n| n.min(*at)));
        }
        next
    }

    /// Every child not yet reaped.
    pub(crate) fn children(&self) -> impl Iterator<Item = &Child> {
        let (current, incoming) = match &self.state.phase {
            Phase::Up { current, reload } => (
                match current {
                    Current::Child(c) => Some(c),
                    _ => None,
                },
                match reload {
                    Some(Reload {
                        incoming: Incoming::Child(c),
                        ..
                    }) => Some(c),
                    _ => None,
                },
            ),
            _ => (None, None),
        };
        current
            .into_iter()
            .chain(incoming)
            .chain(self.state.retiring.iter())
    }

    /// Handles one input at `now`.
    pub(crate) fn handle(&mut self, input: Input, now: Time) {
        if matches!(self.state.phase, Phase::Done { .. }) {
            return;
        }
        match input {
            Input::Spawned {
                child,
                pid,
                started,
            } => self.on_spawned(child, pid, started, now),
            Input::SpawnFailed {
                child,
                reason,
                busy,
            } => self.on_spawn_failed(child, reason, busy, now),
            Input::Message { child, msg } => self.on_message(child, msg, now),
            Input::ChannelFailed { child, reason } => {
                if let Some(place) = self.find(child) {
                    self.kill(place, reason);
                }
            }
            Input::Exited { child, status } => self.on_exit(child, status, now),
            Input::Request { client, request } => self.on_request(client, request, now),
            Input::ClientGone { client } => self.on_client_gone(client),
            Input::Prepared { program, listeners } => self.on_prepared(program, listeners, now),
            Input::PrepareFailed { reason, counts } => {
                if let Phase::Up {
                    reload:
                        Some(Reload {
                            incoming: Incoming::Preparing,
                            ..
                        }),
                    ..
                } = self.state.phase
                {
                    let what = format!("could not be started: {reason}");
                    self.reload_failed(reason, what, counts, now);
                }
            }
            Input::Signal(signal) => self.on_signal(signal, now),
            Input::BuildLanded => self.on_build(now),
            Input::Probed { result } => self.on_probed(result, now),
            Input::ExecFailed { reason } => {
                if self.exec_wanted() {
                    let why = format!("re-executing the supervisor failed: {reason}");
                    self.upgrade_failed(why, now);
                }
            }
            Input::Resumed => self.on_resumed(now),
            Input::DescendantsEnded { ended } => self.on_descendants_ended(ended),
        }
        // An upgrade waiting for the connections on their way may go now.
        self.exec_if_due(now);
        self.check_done();
    }

    /// Acts on every deadline that has passed by `now`.
    pub(crate) fn handle_timeout(&mut self, now: Time) {
        if matches!(self.state.phase, Phase::Done { .. }) {
            return;
        }
        loop {
            let due = self.places().into_iter().find(|&(place, _)| {
                self.try_child(place)
                    .and_then(Child::deadline)
                    .is_some_and(|d| d <= now)
            });
            let Some((place, _)) = due else { break };
            self.on_deadline(place, now);
        }
        self.recall_due(now);
        self.exec_if_due(now);
        if let Phase::Up {
            current: Current::Backoff { at, .. },
            reload: None,
        } = &self.state.phase
        {
            if *at <= now {
                self.restart(now);
            }
        }
        self.check_done();
    }

    // --- children -----------------------------------------------------------------

    fn places(&self) -> Vec<(Place, ChildId)> {
        let mut places = Vec::new();
        if let Phase::Up { current, reload } = &self.state.phase {
            if let Current::Child(c) = current {
                places.push((Place::Current, c.id));
            }
            if let Some(Reload {
                incoming: Incoming::Child(c),
                ..
            }) = reload
            {
                places.push((Place::Incoming, c.id));
            }
        }
        places.extend(
            self.state
                .retiring
                .iter()
                .enumerate()
                .map(|(i, c)| (Place::Retiring(i), c.id)),
        );
        places
    }

    fn find(&self, id: ChildId) -> Option<Place> {
        self.places()
            .into_iter()
            .find(|&(_, c)| c == id)
            .map(|(p, _)| p)
    }

    fn try_child(&self, place: Place) -> Option<&Child> {
        match (place, &self.state.phase) {
            (
                Place::Current,
                Phase::Up {
                    current: Current::Child(c),
                    ..
                },
            ) => Some(c),
            (
                Place::Incoming,
                Phase::Up {
                    reload:
                        Some(Reload {
                            incoming: Incoming::Child(c),
                            ..
                        }),
                    ..
                },
            ) => Some(c),
            (Place::Retiring(i), _) => self.state.retiring.get(i),
            _ => None,
        }
    }

    fn child_mut(&mut self, place: Place) -> Option<&mut Child> {
        match (place, &mut self.state.phase) {
            (
                Place::Current,
                Phase::Up {
                    current: Current::Child(c),
                    ..
                },
            ) => Some(c),
            (
                Place::Incoming,
                Phase::Up {
                    reload:
                        Some(Reload {
                            incoming: Incoming::Child(c),
                            ..
                        }),
                    ..
                },
            ) => Some(c),
            (Place::Retiring(i), _) => self.state.retiring.get_mut(i),
            _ => None,
        }
    }

    /// Takes the child out of its place (the place is left empty or removed).
    fn take(&mut self, place: Place) -> Option<Child> {
        match place {
            Place::Retiring(i) => Some(self.state.retiring.remove(i)),
            Place::Current => {
                let Phase::Up { current, .. } = &mut self.state.phase else {
                    return None;
                };
                if !matches!(current, Current::Child(_)) {
                    return None;
                }
                let program = self.try_child(place).map(|c| c.program.clone())?;
                let Phase::Up { current, .. } = &mut self.state.phase else {
                    return None;
                };
                // A placeholder; every caller puts what follows in its place.
                match std::mem::replace(current, Current::Backoff { program, at: 0 }) {
                    Current::Child(c) => Some(c),
                    _ => None,
                }
            }
            Place::Incoming => {
                let Phase::Up { reload, .. } = &mut self.state.phase else {
                    return None;
                };
                match reload.as_mut().map(|r| &mut r.incoming) {
                    Some(incoming @ Incoming::Child(_)) => {
                        match std::mem::replace(incoming, Incoming::Preparing) {
                            Incoming::Child(c) => Some(c),
                            Incoming::Preparing => None,
                        }
                    }
                    _ => None,
                }
            }
        }
    }

    fn set_current(&mut self, value: Current) {
        if let Phase::Up { current, .. } = &mut self.state.phase {
            *current = value;
        }
    }

    /// A new child record, and the effect that starts it.
    fn spawn(
        &mut self,
        program: ProgramRecord,
        listeners: Vec<ListenerRecord>,
        now: Time,
    ) -> Child {
        self.state.next_child += 1;
        let id = ChildId(self.state.next_child);
        let argv = child_argv(&program.args, &listeners);
        self.effects.push_back(Effect::Spawn {
            child: id,
            program: program.clone(),
            argv: argv.clone(),
        });
        Child {
            id,
            pid: 0,
            program,
            argv,
            listeners,
            started: None,
            started_at: now,
            life: Life::Spawning,
            lameduck_ms: self.settings.lameduck_ms,
            killed_because: None,
            finished: None,
        }
    }

    /// SIGKILL to the child's group, once, for `reason`.
    fn kill(&mut self, place: Place, reason: String) {
        let Some(child) = self.child_mut(place) else {
            return;
        };
        if child.life == Life::Killed {
            return;
        }
        child.killed_because.get_or_insert(reason);
        child.life = Life::Killed;
        let id = child.id;
        self.effects.push_back(Effect::Kill { child: id });
    }

    /// Asks the child to wind down; it is killed after its lameduck time.
    fn lameduck(&mut self, child: &mut Child, now: Time) -> Option<Effect> {
        let kill_at = now.saturating_add(child.lameduck_ms);
        let (life, tell) = match child.life {
            Life::Spawning | Life::Started { .. } => (
                Life::Lameduck {
                    kill_at,
                    welcomed: false,
                },
                false,
            ),
            Life::Settling { .. } | Life::AwaitingReady { .. } | Life::Ready => (
                Life::Lameduck {
                    kill_at,
                    welcomed: true,
                },
                true,
            ),
            Life::Lameduck {
                kill_at: earlier,
                welcomed,
            } => (
                Life::Lameduck {
                    kill_at: earlier.min(kill_at),
                    welcomed,
                },
                false,
            ),
            Life::Killed => (Life::Killed, false),
        };
        child.life = life;
        tell.then_some(Effect::Send {
            child: child.id,
            msg: SupervisorMsg::Lameduck,
        })
    }

    /// Moves a child to the retiring list, winding down.
    fn retire(&mut self, mut child: Child, now: Time) {
        if let Some(effect) = self.lameduck(&mut child, now) {
            self.effects.push_back(effect);
        }
        self.state.retiring.push(child);
    }

    fn on_spawned(&mut self, id: ChildId, pid: u32, started: SystemTime, now: Time) {
        let Some(place) = self.find(id) else { return };
        let hello_by = now.saturating_add(self.settings.hello_timeout_ms);
        let Some(child) = self.child_mut(place) else {
            return;
        };
        child.pid = pid;
        child.started = Some(started);
        if child.life == Life::Spawning {
            child.life = Life::Started { by: hello_by };
        }
        let path = child.program.path.display().to_string();
        match place {
            Place::Incoming => {
                // A build's reload says one line, when it ends.
                if !self.reloading_build() {
                    self.log(format!("reloading: started pid {pid} ({path})"));
                }
                self.replay_queued(now);
            }
            Place::Current if !self.state.announced => {
                self.state.announced = true;
                let shown = listeners_shown(&self.state.listeners);
                self.log(format!(
                    "supervisor pid {} started child pid {pid}; listeners {shown}",
                    self.state.pid
                ));
            }
            Place::Current | Place::Retiring(_) => {
                self.log(format!("started child pid {pid}"));
            }
        }
    }

    fn on_spawn_failed(&mut self, id: ChildId, reason: String, busy: bool, now: Time) {
        let Some(place) = self.find(id) else { return };
        // Dev mode: a build still being written is not complete yet, so not a failure;
        // the watch reports it again once its writer is done.
        let incomplete = busy && self.settings.dev;
        if incomplete {
            self.effects.push_back(Effect::WatchBuildAgain);
        } else {
            self.state.failures += 1;
        }
        match place {
            Place::Incoming if incomplete => {
                self.take(place);
                let what =
                    "is still being written (executable file busy); it starts once it is complete"
                        .to_string();
                self.reload_failed(reason, what, false, now);
            }
            Place::Incoming => {
                self.take(place);
                let what = format!("could not be started: {reason}");
                self.reload_failed(reason, what, false, now);
            }
            Place::Current => {
                let Some(child) = self.take(place) else {
                    return;
                };
                if self.settings.dev {
                    self.state.announced = true;
                    self.warn(format!("dev: {reason}; waiting for the next build"));
                    return self.set_current(Current::Idle {
                        program: child.program,
                    });
                }
                self.warn(reason);
                if self.state.announced && self.settings.persist {
                    let delay = self.next_backoff();
                    self.log(format!(
                        "starting it again in {}",
                        human_duration(Duration::from_millis(delay))
                    ));
                    self.set_current(Current::Backoff {
                        program: child.program,
                        at: now.saturating_add(delay),
                    });
                } else {
                    self.state.announced = true;
                    self.stop_now(1, now);
                }
            }
            Place::Retiring(_) => {
                self.take(place);
            }
        }
    }

    fn on_message(&mut self, id: ChildId, msg: ChildMsg, now: Time) {
        let Some(place) = self.find(id) else { return };
        let name = self.settings.name.clone();
        let Some(child) = self.try_child(place).cloned() else {
            return;
        };
        match (msg, &child.life) {
            (
                ChildMsg::Hello(hello),
                Life::Started { .. }
                | Life::Lameduck {
                    welcomed: false, ..
                },
            ) => {
                if hello.name != name {
                    let reason = format!("it is service {:?}, not {:?}", hello.name, name);
                    self.effects.push_back(Effect::Send {
                        child: id,
                        msg: SupervisorMsg::Refused {
                            reason: reason.clone(),
                        },
                    });
                    return self.kill(place, reason);
                }
                self.effects.push_back(Effect::Welcome {
                    child: id,
                    listeners: child.listeners.clone(),
                });
                let Some(c) = self.child_mut(place) else {
                    return;
                };
                c.lameduck_ms = declared(hello.lameduck_ms);
                let ms = Duration::from_millis;
                let wait = until_ready(
                    hello.calls_ready,
                    ms(hello.settle_ms),
                    ms(hello.ready_timeout_ms),
                );
                let due = now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                c.life = match c.life {
                    Life::Lameduck { kill_at, .. } => Life::Lameduck {
                        kill_at,
                        welcomed: true,
                    },
                    _ if hello.calls_ready => Life::AwaitingReady { by: due },
                    _ => Life::Settling { at: due },
                };
                if matches!(c.life, Life::Lameduck { .. }) {
                    self.effects.push_back(Effect::Send {
                        child: id,
                        msg: SupervisorMsg::Lameduck,
                    });
                }
            }
            (ChildMsg::Ready, Life::Settling { .. } | Life::AwaitingReady { .. }) => {
                if let Some(c) = self.child_mut(place) {
                    c.life = Life::Ready;
                }
                self.became_ready(place, now);
            }
            (
                ChildMsg::Ready,
                Life::Ready | Life::Lameduck { welcomed: true, .. } | Life::Killed,
            ) => {}
            (ChildMsg::Adopts { listener }, _) if child.welcomed() => {
                self.on_adopts(id, listener);
            }
            (ChildMsg::Hand(parcels), _) => self.on_hand(id, parcels, now),
            (ChildMsg::Adopted(ids), _) => self.on_answer(id, ids, true),
            (ChildMsg::Declined(ids), _) => self.on_answer(id, ids, false),
            (ChildMsg::Finished(result), _) if child.welcomed() => {
                if let Some(c) = self.child_mut(place) {
                    c.finished = Some(result);
                }
            }
            (other, _) => {
                self.kill(place, format!("it sent an unexpected message: {other:?}"));
            }
        }
    }

    fn on_deadline(&mut self, place: Place, now: Time) {
        let Some(child) = self.try_child(place) else {
            return;
        };
        let ran = Duration::from_millis(now.saturating_sub(child.started_at));
        match child.life {
            Life::Started { .. } => {
                let within = human_duration(Duration::from_millis(self.settings.hello_timeout_ms));
                self.kill(place, format!("it did not say hello within {within}"));
            }
            Life::AwaitingReady { .. } => {
                let within = human_timeout(ran);
                self.kill(
                    place,
                    format!(
                        "it declares calls_ready = true but did not call ready() within {within}: call lb.ready() once it serves, or drop calls_ready"
                    ),
                );
            }
            Life::Settling { .. } => {
                if let Some(c) = self.child_mut(place) {
                    c.life = Life::Ready;
                }
                self.became_ready(place, now);
            }
            Life::Lameduck { .. } => {
                let after = human_duration(Duration::from_millis(child.lameduck_ms));
                self.kill(
                    place,
                    format!("it was still running {after} after lameduck"),
                );
            }
            Life::Spawning | Life::Ready | Life::Killed => {}
        }
    }

    fn became_ready(&mut self, place: Place, now: Time) {
        match place {
            Place::Incoming => self.promote(now),
            Place::Current => {
                let pid = self.try_child(place).map_or(0, |c| c.pid);
                self.log(format!("child pid {pid} is ready"));
                let serving = self.serving();
                self.notify(Notice::Ready(serving));
            }
            Place::Retiring(_) => {}
        }
    }

    /// The new child is ready: it serves, and the old one winds down.
    fn promote(&mut self, now: Time) {
        let Some(new) = self.take(Place::Incoming) else {
            return;
        };
        let Phase::Up { current, reload } = &mut self.state.phase else {
            return;
        };
        let reload = reload.take();
        let old = std::mem::replace(current, Current::Child(new.clone()));
        let old_pid = match old {
            Current::Child(old) => {
                let pid = old.pid;
                // Before its lameduck: it hands its idle connections over.
                if let Some(msg) = self.successor_msg(new.id) {
                    self.effects.push_back(Effect::Send { child: old.id, msg });
                }
                self.state.previous = Some(old.program.clone());
                self.retire(old, now);
                Some(pid)
            }
            Current::Backoff { program, .. }
            | Current::Exited { program, .. }
            | Current::Idle { program } => {
                self.state.previous = Some(program);
                None
            }
        };
        self.state.listeners = new.listeners.clone();
        self.state.reloads += 1;
        let ms = reload.as_ref().map_or(0, |r| now.saturating_sub(r.since));
        if let Some(reload) = reload.as_ref().filter(|r| r.upgrade) {
            let old_shown = old_pid.map_or_else(|| "none".to_string(), |p| p.to_string());
            self.log(format!(
                "upgrading: child pid {old_shown} -> {} in {ms} ms; asking {} to take over the supervisor",
                new.pid,
                new.program.path.display()
            ));
            self.state.upgrade = Some(Upgrade {
                waiter: reload.waiter,
                program: new.program.clone(),
                old_pid,
                new_pid: new.pid,
                ms,
                step: UpgradeStep::Probing,
                from: self.settings.versions.newest,
            });
            self.effects.push_back(Effect::Probe {
                program: new.program,
            });
            return;
        }
        if reload.as_ref().is_some_and(|r| r.build) {
            let pids = match old_pid {
                Some(old) => format!("pid {old} -> {}", new.pid),
                None => format!("pid {}", new.pid),
            };
            self.log(format!("dev: new build ready, {pids} in {ms} ms"));
        } else {
            let old_shown = old_pid.map_or_else(|| "none".to_string(), |p| p.to_string());
            self.log(format!(
                "reloaded: pid {old_shown} -> {} in {ms} ms",
                new.pid
            ));
        }
        let serving = self.serving();
        self.notify(Notice::Ready(serving));
        if let Some(client) = reload.and_then(|r| r.waiter) {
            self.answer(
                client,
                Response::Reloaded {
                    old_pid,
                    new_pid: new.pid,
                    ms,
                },
            );
        }
        self.build_if_pending(now);
    }

    fn on_exit(&mut self, id: ChildId, status: WaitStatus, now: Time) {
        let Some(place) = self.find(id) else { return };
        let moved = self.forget_moves(id);
        // Whatever the program left in its process group goes with it, while its pid
        // (the group's id) still cannot be reused; then it is reaped.
        self.effects.push_back(Effect::Kill { child: id });
        self.effects.push_back(Effect::Reap { child: id });
        let Some(child) = self.take(place) else {
            return;
        };
        let exit = Exit {
            status,
            killed_because: child.killed_because.clone(),
            ran: Duration::from_millis(now.saturating_sub(child.started_at)),
            finished: child.finished.clone(),
        };
        match place {
            Place::Retiring(_) => {
                if let Phase::Stopping {
                    serving,
                    cancelled,
                    code,
                    ..
                } = &mut self.state.phase
                {
                    if *serving == Some(id) {
                        *code = Some(exit.code());
                        let text = format!("child pid {} {}", child.pid, exit.describe());
                        return self.log(text);
                    }
                    if *cancelled == Some(id) {
                        let text = format!("new child pid {} {}", child.pid, exit.describe());
                        return self.warn(format!("reload failed: {text}"));
                    }
                }
                let moved = match moved {
                    Some(1) => "; 1 connection moved to the new child".to_string(),
                    Some(n) => format!("; {n} connections moved to the new child"),
                    None => String::new(),
                };
                self.log(format!(
                    "old child pid {} {}{moved}",
                    child.pid,
                    exit.describe()
                ));
            }
            Place::Incoming => {
                let reason = format!("new child pid {} {}", child.pid, exit.describe());
                let what = format!("pid {} {}", child.pid, exit.before_ready());
                self.state.failures += 1;
                self.reload_failed(reason, what, false, now);
            }
            Place::Current => {
                let reloading = matches!(
                    self.state.phase,
                    Phase::Up {
                        reload: Some(_),
                        ..
                    }
                );
                if reloading {
                    self.log(format!(
                        "child pid {} {} during a reload; waiting for the new one",
                        child.pid,
                        exit.describe()
                    ));
                    let was_ready = child.is_ready();
                    self.set_current(Current::Exited {
                        program: child.program,
                        pid: child.pid,
                        exit,
                        was_ready,
                    });
                } else {
                    let was_ready = child.is_ready();
                    self.child_gone(child.program, child.pid, exit, was_ready, now);
                }
            }
        }
    }

    /// The serving child exited on its own: fall back, start it again, or stop.
    fn child_gone(
        &mut self,
        program: ProgramRecord,
        pid: u32,
        exit: Exit,
        was_ready: bool,
        now: Time,
    ) {
        if exit.failed() {
            self.state.failures += 1;
        }
        if self.settings.dev {
            self.warn(format!(
                "dev: child pid {pid} {}; the listeners stay open, waiting for the next build",
                exit.describe()
            ));
            return self.set_current(Current::Idle { program });
        }
        self.log(format!("child pid {pid} {}", exit.describe()));
        if self.settings.fallback && exit.failed() && was_ready {
            if let Some(previous) = self.state.previous.take() {
                self.log(format!("falling back to {}", previous.path.display()));
                self.state.restarts += 1;
                let child = self.spawn(previous, self.state.listeners.clone(), now);
                return self.set_current(Current::Child(child));
            }
        }
        if self.settings.persist {
            if exit.ran >= BACKOFF_RESET {
                self.state.backoff_ms = BACKOFF_MIN_MS;
            }
            let delay = self.next_backoff();
            self.log(format!(
                "starting it again in {}",
                human_duration(Duration::from_millis(delay))
            ));
            return self.set_current(Current::Backoff {
                program,
                at: now.saturating_add(delay),
            });
        }
        self.stop_now(exit.code(), now);
    }

    /// Starts the program waiting out its backoff.
    fn restart(&mut self, now: Time) {
        let Phase::Up {
            current: Current::Backoff { program, .. },
            ..
        } = &self.state.phase
        else {
            return;
        };
        let program = program.clone();
        self.state.restarts += 1;
        let child = self.spawn(program, self.state.listeners.clone(), now);
        self.set_current(Current::Child(child));
    }

    /// The delay before the next restart, doubling the one after it (up to the cap).
    fn next_backoff(&mut self) -> u64 {
        let delay = self.state.backoff_ms;
        self.state.backoff_ms = delay.saturating_mul(2).min(BACKOFF_MAX_MS);
        delay
    }

    // --- requests -----------------------------------------------------------------

    fn on_request(&mut self, client: ClientId, request: Request, now: Time) {
        match request {
            Request::Status => {
                let status = self.status();
                self.answer(client, Response::Status(Box::new(status)));
            }
            Request::Stop => self.begin_stop(Some(client), now),
            Request::Reload(request) => {
                let path = PathBuf::from(OsString::from_vec(request.path));
                let args = request
                    .args
                    .map(|args| args.into_iter().map(OsString::from_vec).collect());
                self.begin_reload(Some(client), path, args, request.listeners, false, now);
            }
            Request::Upgrade(request) => self.begin_upgrade(client, request, now),
        }
    }

    /// `--littleboss=upgrade`: a reload, then (once its child is ready) the supervisor
    /// itself. Refused while anything else is under way.
    fn begin_upgrade(&mut self, client: ClientId, request: ReloadRequest, now: Time) {
        let name = &self.state.name;
        let refusal = match (&self.state.phase, &self.state.upgrade) {
            (Phase::Stopping { .. } | Phase::Ending { .. } | Phase::Done { .. }, _) => {
                Some(format!("{name} is stopping"))
            }
            (_, Some(upgrade)) => Some(format!(
                "another upgrade is under way (to {}); try again when it has ended",
                upgrade.program.path.display()
            )),
            (
                Phase::Up {
                    reload: Some(_), ..
                },
                _,
            ) => Some("a reload is under way; try again when it has ended".to_string()),
            (Phase::Up { reload: None, .. }, None) => None,
        };
        if let Some(reason) = refusal {
            self.warn(format!("upgrade refused: {reason}"));
            return self.answer(client, Response::Failed { reason });
        }
        let path = PathBuf::from(OsString::from_vec(request.path));
        self.log(format!("upgrading to {}", path.display()));
        let args = request
            .args
            .map(|args| args.into_iter().map(OsString::from_vec).collect());
        self.begin_reload(Some(client), path, args, request.listeners, false, now);
        if let Phase::Up {
            reload: Some(reload),
            ..
        } = &mut self.state.phase
        {
            reload.upgrade = true;
        }
    }

    /// The new binary said whether it can take over the supervisor: before its child
    /// starts (`vetting`), and again once it serves.
    fn on_probed(&mut self, result: Result<(), String>, now: Time) {
        if let Phase::Up {
            reload: Some(reload),
            ..
        } = &mut self.state.phase
        {
            if let Some((program, listeners)) = reload.vetting.take() {
                return match result {
                    Ok(()) => self.start_incoming(program, listeners, now),
                    Err(why) => {
                        let reason = format!(
                            "{} cannot take over the supervisor: {why}; nothing was changed",
                            program.path.display()
                        );
                        self.reload_failed(reason.clone(), reason, false, now);
                    }
                };
            }
        }
        let Some(upgrade) = self.state.upgrade.as_mut() else {
            return;
        };
        if upgrade.step != UpgradeStep::Probing {
            return;
        }
        match result {
            Ok(()) => {
                upgrade.step = UpgradeStep::Exec;
                self.exec_when_moved(now);
            }
            Err(why) => {
                let path = upgrade.program.path.display().to_string();
                self.upgrade_failed(
                    format!("{path} cannot take over the supervisor: {why}"),
                    now,
                );
            }
        }
    }

    /// The child was upgraded but the supervisor cannot be: it runs on as it was, with
    /// the new child.
    fn upgrade_failed(&mut self, why: String, now: Time) {
        let Some(upgrade) = self.state.upgrade.take() else {
            return;
        };
        let old = upgrade
            .old_pid
            .map_or_else(|| "none".to_string(), |p| p.to_string());
        let reason = format!(
            "the child was upgraded (pid {old} -> {} in {} ms) but the supervisor was not: {why}; it still runs {}",
            upgrade.new_pid,
            upgrade.ms,
            self.state.supervisor_path.display()
        );
        self.warn(format!("upgrade failed: {reason}"));
        if matches!(self.state.phase, Phase::Up { .. }) {
            let serving = self.serving();
            self.notify(Notice::Ready(serving));
        }
        if let Some(client) = upgrade.waiter {
            self.answer(client, Response::Failed { reason });
        }
        self.build_if_pending(now);
    }

    /// This image is the upgrade's binary, with the state of the one before.
    fn on_resumed(&mut self, now: Time) {
        if !self.exec_wanted() {
            return;
        }
        let Some(upgrade) = self.state.upgrade.take() else {
            return;
        };
        self.state.upgrades += 1;
        self.state.supervisor_path = upgrade.program.path.clone();
        let to = self.settings.versions.newest;
        let path = upgrade.program.path.display().to_string();
        self.log(format!(
            "upgraded: supervisor pid {} now runs {path} (protocol {} -> {to})",
            self.state.pid, upgrade.from
        ));
        let serving = self.serving();
        self.notify(Notice::Ready(serving));
        if let Some(client) = upgrade.waiter {
            self.answer(
                client,
                Response::Upgraded(Upgraded {
                    old_pid: upgrade.old_pid,
                    new_pid: upgrade.new_pid,
                    ms: upgrade.ms,
                    supervisor_pid: self.state.pid,
                    path,
                    from: upgrade.from,
                    to,
                }),
            );
        }
        self.build_if_pending(now);
    }

    fn on_client_gone(&mut self, client: ClientId) {
        if let Some(upgrade) = self.state.upgrade.as_mut() {
            if upgrade.waiter == Some(client) {
                upgrade.waiter = None;
            }
        }
        match &mut self.state.phase {
            Phase::Up {
                reload: Some(reload),
                ..
            } => {
                let waiters = reload.queued.iter_mut().map(|a| &mut a.waiter);
                for waiter in std::iter::once(&mut reload.waiter).chain(waiters) {
                    if *waiter == Some(client) {
                        *waiter = None;
                    }
                }
            }
            Phase::Stopping { waiters, .. } | Phase::Ending { waiters, .. } => {
                waiters.retain(|w| *w != client)
            }
            _ => {}
        }
    }

    fn on_signal(&mut self, signal: Signal, now: Time) {
        let name = signal.name();
        match (signal, &self.state.phase) {
            (Signal::Hup, Phase::Up { current, .. }) => {
                let path = current.program().path.clone();
                self.log(format!("{name}: reloading"));
                self.begin_reload(None, path, None, Vec::new(), false, now);
            }
            (Signal::Hup, _) => {
                self.begin_reload(None, PathBuf::new(), None, Vec::new(), false, now);
            }
            (_, Phase::Ending { .. }) => {}
            (_, Phase::Stopping { .. }) => {
                self.log(format!("{name} again: killing the children now"));
                for place in self.places() {
                    self.kill(place.0, format!("{name} arrived twice"));
                }
            }
            (_, _) => {
                self.log(format!("{name}: stopping"));
                self.begin_stop(None, now);
            }
        }
    }

    /// Dev mode: a build landed. It reloads the serving program's path with its
    /// arguments, or waits for the reload under way to end.
    fn on_build(&mut self, now: Time) {
        if !self.settings.dev {
            return;
        }
        if self.state.upgrade.is_some() {
            self.state.build_pending = true;
            return;
        }
        match &self.state.phase {
            Phase::Up {
                reload: Some(_), ..
            } => self.state.build_pending = true,
            Phase::Up {
                current,
                reload: None,
            } => {
                let path = current.program().path.clone();
                self.begin_reload(None, path, None, Vec::new(), true, now);
            }
            Phase::Stopping { .. } | Phase::Ending { .. } | Phase::Done { .. } => {}
        }
    }

    /// A reload has ended: the build that landed meanwhile, if any, reloads now.
    fn build_if_pending(&mut self, now: Time) {
        if std::mem::take(&mut self.state.build_pending) {
            self.on_build(now);
        }
    }

    /// Whether the reload under way is to a build that landed.
    fn reloading_build(&self) -> bool {
        matches!(
            &self.state.phase,
            Phase::Up {
                reload: Some(Reload { build: true, .. }),
                ..
            }
        )
    }

    fn begin_reload(
        &mut self,
        waiter: Option<ClientId>,
        path: PathBuf,
        args: Option<Vec<OsString>>,
        overrides: Vec<(String, String)>,
        build: bool,
        now: Time,
    ) {
        let upgrading = self.state.upgrade.as_ref().map(|u| {
            format!(
                "an upgrade is under way (the supervisor becomes {}); try again when it has ended",
                u.program.path.display()
            )
        });
        let refusal = match &mut self.state.phase {
            Phase::Stopping { .. } | Phase::Ending { .. } | Phase::Done { .. } => {
                Some(format!("{} is stopping", self.state.name))
            }
            Phase::Up { .. } if upgrading.is_some() => upgrading,
            Phase::Up {
                reload: Some(reload),
                ..
            } => match &reload.incoming {
                Incoming::Child(c) => Some(format!(
                    "another reload is under way (new child pid {}); try again when it has ended",
                    c.pid
                )),
                Incoming::Preparing => {
                    reload.queued.push(Asked {
                        waiter,
                        path,
                        args,
                        overrides,
                    });
                    return;
                }
            },
            Phase::Up { reload: None, .. } => None,
        };
        if let Some(reason) = refusal {
            self.warn(format!("reload refused: {reason}"));
            if let Some(client) = waiter {
                self.answer(client, Response::Failed { reason });
            }
            return;
        }
        let Phase::Up { current, reload } = &mut self.state.phase else {
            return;
        };
        let args = args.unwrap_or_else(|| current.program().args.clone());
        *reload = Some(Reload {
            waiter,
            since: now,
            incoming: Incoming::Preparing,
            queued: Vec::new(),
            build,
            upgrade: false,
            vetting: None,
        });
        self.notify(Notice::Reloading);
        self.effects.push_back(Effect::Prepare {
            client: waiter,
            path,
            args,
            listeners: self.state.listeners.clone(),
            overrides,
        });
    }

    fn on_prepared(&mut self, program: ProgramRecord, listeners: Vec<ListenerRecord>, now: Time) {
        let preparing = matches!(
            self.state.phase,
            Phase::Up {
                reload: Some(Reload {
                    incoming: Incoming::Preparing,
                    ..
                }),
                ..
            }
        );
        // A reload cancelled meanwhile: what was opened is not referred to, and closed.
        if !preparing {
            return;
        }
        if let Phase::Up {
            reload: Some(reload @ Reload { upgrade: true, .. }),
            ..
        } = &mut self.state.phase
        {
            reload.vetting = Some((program.clone(), listeners));
            return self.effects.push_back(Effect::Probe { program });
        }
        self.start_incoming(program, listeners, now);
    }

    /// The new child of the reload under way starts.
    fn start_incoming(
        &mut self,
        program: ProgramRecord,
        listeners: Vec<ListenerRecord>,
        now: Time,
    ) {
        let child = self.spawn(program, listeners, now);
        if let Phase::Up {
            reload: Some(reload),
            ..
        } = &mut self.state.phase
        {
            reload.incoming = Incoming::Child(child);
        }
    }

    /// The reload under way failed: the serving child never noticed. `what` is how a
    /// build's line says it (`pid 4311 exited with code 101 before it was ready`).
    fn reload_failed(&mut self, reason: String, what: String, counts: bool, now: Time) {
        let Phase::Up { reload, .. } = &mut self.state.phase else {
            return;
        };
        let Some(mut reload) = reload.take() else {
            return;
        };
        let queued = std::mem::take(&mut reload.queued);
        if counts {
            self.state.failures += 1;
        }
        if reload.build {
            let still = match self.serving_child() {
                Some(c) => format!("still serving pid {}", c.pid),
                None => "no child is serving; waiting for the next build".to_string(),
            };
            self.warn(format!("dev: new build {what}; {still}"));
        } else {
            self.warn(format!("reload failed: {reason}"));
        }
        let serving = self.serving();
        self.notify(Notice::Ready(format!("reload failed; {serving}")));
        if let Some(client) = reload.waiter {
            self.answer(client, Response::Failed { reason });
        }
        let exited = match &mut self.state.phase {
            // A program waiting to be started again waited for the reload.
            Phase::Up {
                current: Current::Backoff { at, .. },
                ..
            } => {
                *at = (*at).max(now);
                None
            }
            // The serving child exited meanwhile: what it would have done then.
            Phase::Up {
                current:
                    Current::Exited {
                        program,
                        pid,
                        exit,
                        was_ready,
                    },
                ..
            } => Some((program.clone(), *pid, exit.clone(), *was_ready)),
            _ => None,
        };
        if let Some((program, pid, exit, was_ready)) = exited {
            self.child_gone(program, pid, exit, was_ready, now);
        }
        self.replay(queued, now);
        self.build_if_pending(now);
    }

    /// The reloads queued behind the one under way, asked again now that it has a
    /// child (they are refused, naming it).
    fn replay_queued(&mut self, now: Time) {
        let queued = match &mut self.state.phase {
            Phase::Up {
                reload: Some(reload),
                ..
            } => std::mem::take(&mut reload.queued),
            _ => Vec::new(),
        };
        self.replay(queued, now);
    }

    fn replay(&mut self, queued: Vec<Asked>, now: Time) {
        for asked in queued {
            self.begin_reload(
                asked.waiter,
                asked.path,
                asked.args,
                asked.overrides,
                false,
                now,
            );
        }
    }

    fn begin_stop(&mut self, waiter: Option<ClientId>, now: Time) {
        if let Phase::Stopping { waiters, .. } | Phase::Ending { waiters, .. } =
            &mut self.state.phase
        {
            waiters.extend(waiter);
            return;
        }
        self.notify(Notice::Stopping);
        self.enter_stopping(waiter, None, now);
    }

    /// Stops with `code` because the serving child is gone and nothing follows it.
    fn stop_now(&mut self, code: i32, now: Time) {
        self.enter_stopping(None, Some(code), now);
    }

    /// Every child winds down: the serving one gets lameduck, a new one of a reload is
    /// killed (and the reload's client told), nothing starts again.
    fn enter_stopping(&mut self, waiter: Option<ClientId>, code: Option<i32>, now: Time) {
        let stopping = Phase::Stopping {
            waiters: waiter.into_iter().collect(),
            serving: None,
            cancelled: None,
            code,
        };
        let Phase::Up { current, reload } = std::mem::replace(&mut self.state.phase, stopping)
        else {
            return;
        };
        self.state.build_pending = false;
        if self.state.upgrade.is_some() {
            let reason = format!("cancelled: {} is stopping", self.state.name);
            self.upgrade_failed(reason, now);
        }
        if let Some(reload) = reload {
            let waiters = reload.queued.iter().filter_map(|a| a.waiter);
            for client in reload.waiter.into_iter().chain(waiters) {
                let reason = format!("cancelled: {} is stopping", self.state.name);
                self.answer(client, Response::Failed { reason });
            }
            if let Incoming::Child(incoming) = reload.incoming {
                if let Phase::Stopping { cancelled, .. } = &mut self.state.phase {
                    *cancelled = Some(incoming.id);
                }
                self.state.retiring.push(incoming);
                let place = Place::Retiring(self.state.retiring.len() - 1);
                self.kill(place, "the supervisor is stopping".to_string());
            }
        }
        let (serving, exited) = match current {
            Current::Child(child) => {
                let id = child.id;
                self.retire(child, now);
                (Some(id), None)
            }
            Current::Exited { exit, .. } => (None, Some(exit.code())),
            Current::Backoff { .. } | Current::Idle { .. } => (None, None),
        };
        if let Phase::Stopping {
            serving: s,
            code: c,
            ..
        } = &mut self.state.phase
        {
            *s = serving;
            *c = c.or(exited);
        }
    }

    /// Once it is stopping and no child is left: closes the listeners and ends what
    /// the service left behind.
    fn check_done(&mut self) {
        let Phase::Stopping { waiters, code, .. } = &self.state.phase else {
            return;
        };
        if !self.state.retiring.is_empty() {
            return;
        }
        self.state.phase = Phase::Ending {
            waiters: waiters.clone(),
            code: code.unwrap_or(0),
        };
        self.effects.push_back(Effect::Close);
        self.effects.push_back(Effect::EndDescendants);
    }

    /// The service's last processes are gone (or could not all be ended): the
    /// supervisor is done, with the exit code the stop is answered with.
    fn on_descendants_ended(&mut self, ended: bool) {
        let Phase::Ending { waiters, code } = &self.state.phase else {
            return;
        };
        let code = if !ended && *code == 0 { 1 } else { *code };
        let waiters = waiters.clone();
        self.state.phase = Phase::Done { code };
        self.log(format!("stopped, exit code {code}"));
        for client in waiters {
            self.answer(client, Response::Stopped { code });
        }
    }

    // --- what the outside sees -----------------------------------------------------

    fn answer(&mut self, client: ClientId, response: Response) {
        self.effects.push_back(Effect::Answer { client, response });
    }

    fn log(&mut self, text: String) {
        self.effects.push_back(Effect::Log(Level::Info, text));
    }

    fn warn(&mut self, text: String) {
        self.effects.push_back(Effect::Log(Level::Warn, text));
    }

    fn notify(&mut self, notice: Notice) {
        self.effects.push_back(Effect::Notify(notice));
    }

    /// The child that serves, or served when the stop came.
    fn serving_child(&self) -> Option<&Child> {
        match &self.state.phase {
            Phase::Up {
                current: Current::Child(c),
                ..
            } => Some(c),
            Phase::Stopping {
                serving: Some(id), ..
            } => self.state.retiring.iter().find(|c| c.id == *id),
            _ => None,
        }
    }

    /// `serving: child pid N (PATH)`, for systemd's status line.
    fn serving(&self) -> String {
        match self.serving_child() {
            Some(c) => format!(
                "serving: child pid {} ({})",
                c.pid,
                c.program.path.display()
            ),
            None => "no child running".to_string(),
        }
    }

    /// `starting`, `running`, `reloading`, `upgrading`, `idle` (dev mode, no child) or
    /// `stopping`.
    fn phase_name(&self) -> &'static str {
        if self.state.upgrade.is_some() && matches!(self.state.phase, Phase::Up { .. }) {
            return "upgrading";
        }
        match &self.state.phase {
            Phase::Up {
                reload: Some(_), ..
            } => "reloading",
            Phase::Up {
                current: Current::Child(c),
                ..
            } if c.is_ready() => "running",
            Phase::Up {
                current: Current::Idle { .. },
                ..
            } => "idle",
            Phase::Up { .. } => "starting",
            Phase::Stopping { .. } | Phase::Ending { .. } | Phase::Done { .. } => "stopping",
        }
    }

    /// What `status` reports.
    pub(crate) fn status(&self) -> Status {
        let current = self.serving_child();
        Status {
            name: self.state.name.clone(),
            protocol: self.settings.versions.newest,
            protocols: [self.settings.versions.oldest, self.settings.versions.newest],
            supervisor_pid: self.state.pid,
            supervisor_started: rfc3339(self.state.started),
            supervisor_path: Some(self.state.supervisor_path.display().to_string()),
            upgrades: self.state.upgrades,
            lameduck_ms: self
                .children()
                .map(|c| c.lameduck_ms)
                .max()
                .unwrap_or(self.settings.lameduck_ms),
            hello_timeout_ms: self.settings.hello_timeout_ms,
            child_pid: current.map(|c| c.pid),
            child_path: current.map(|c| c.program.path.display().to_string()),
            child_args: current
                .map(|c| {
                    c.argv
                        .iter()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            child_started: current.and_then(|c| c.started).map(rfc3339),
            previous_path: self
                .state
                .previous
                .as_ref()
                .map(|p| p.path.display().to_string()),
            reloads: self.state.reloads,
            failures: self.state.failures,
            restarts: self.state.restarts,
            state: self.phase_name().to_string(),
            listeners: self
                .state
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.shown()))
                .collect(),
        }
    }
}

/// What a child runs with: the program name, its listener flags as bound (so `ps` and
/// the program's own parser see the real addresses), then the program's arguments.
fn child_argv(args: &[OsString], listeners: &[ListenerRecord]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = args.iter().take(1).cloned().collect();
    for listener in listeners {
        let addr = listener
            .bound
            .as_ref()
            .map(|(addr, _)| addr.to_string())
            .unwrap_or_default();
        argv.push(format!("--{}={addr}", listener.name).into());
    }
    argv.extend(args.iter().skip(1).cloned());
    argv
}
