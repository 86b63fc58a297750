//! The supervisor's decisions, with no I/O: it takes an [`Input`] and the time, and
//! hands back [`Effect`]s for the shell to carry out.
//!
//! Everything that decides is here; the shell ([`super::shell`]) only turns sockets,
//! signals, exits and timers into inputs, and effects into system calls. Time is a
//! plain number of milliseconds on a monotonic clock ([`Time`]); clients and children
//! are ids, so the whole [`State`] is a value that an upgrade can hand over. Every
//! deadline is an entry of one timer table ([`timers`]), and
//! [`Machine::next_deadline`] is its first: the shell sleeps until then and calls
//! [`Machine::handle_timeout`], as quinn-proto's `poll_timeout` / `handle_timeout` do.
//!
//! Where the supervisor is in its life is one flat enum ([`Lifecycle`]), each variant
//! holding what its situation needs, so the rules hold by construction:
//!
//! - nothing starts while stopping: [`Lifecycle::Stopping`] names no serving or
//!   incoming child, and every child left winds down;
//! - at most one serving and one incoming child: only [`Lifecycle::Reloading`] has an
//!   incoming one, and each variant names at most one that serves;
//! - every child that was started is in the table ([`State::children`]) until its
//!   exit, when its process group is killed and then it is reaped, in that order,
//!   once; what it is to the supervisor (serving, incoming, winding down) follows from
//!   the lifecycle, never from where it is stored.
//!
//! Each move from one variant to another is a named method: `begin_reload`,
//! `promote`, `reload_failed`, `child_gone` (with `put_serving` and `settle`),
//! `restart`, `begin_upgrade`, `upgrade_failed`, `on_resumed`, `enter_stopping`,
//! `check_done`, `on_descendants_ended`.
//!
//! In dev mode ([`Settings::dev`]) a build that lands ([`Input::BuildLanded`]) is a
//! reload of the serving program's path, and only a stop ends the supervisor: a child
//! that exits leaves [`Lifecycle::Idle`]. A build that lands during a reload or an
//! upgrade is kept in it (`build_pending`), and reloads once it has ended.

mod child;
pub(crate) mod journal;
mod lifecycle;
mod moves;
mod probation;
pub(crate) mod tally;
#[cfg(test)]
mod tests;
mod timers;
mod transfer;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use littleboss_rules::wait::until_ready;

use crate::control::history::{Kind, Outcome};
use crate::control::protocol::{
    ChildMsg, Parcel, Probation, ReloadRequest, Request, Response, Status, SupervisorMsg, Upgraded,
    Versions,
};
use crate::logger::Level;
use crate::supervisor::state::{FdKey, ListenerRecord, ProgramRecord, listeners_shown, rfc3339};

pub(crate) use child::{Child, Exit, Life, WaitStatus, human_duration, human_timeout};
use journal::{Journal, Part, Step};
pub(crate) use lifecycle::{
    Asked, Back, Cold, Incoming, Lifecycle, Reload, ReloadKind, Slot, Stop, Trial, Upgrade,
    UpgradeStep,
};
use moves::Moving;
pub(crate) use moves::{MovesRecord, Transit};
use tally::Tally;
pub(crate) use timers::{Timer, Timers};
use transfer::Transfers;

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
    /// The control flag's name, for the commands a message suggests.
    pub flag: String,
    pub persist: bool,
    pub fallback: bool,
    /// A child's lameduck time until its hello says otherwise.
    pub lameduck_ms: u64,
    /// How long a child has to say hello.
    pub hello_timeout_ms: u64,
    /// `--littleboss=dev`: a new build at the program's path reloads
    /// ([`Input::BuildLanded`]), and a child that exits does not end the supervisor: it
    /// waits for the next build ([`Lifecycle::Idle`]) instead of restarting or falling back.
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
    /// Connections a child handed over that are not connections of its listeners (or
    /// carry too much): their fds are closed, and they go back to it.
    HandRefused {
        child: ChildId,
        ids: Vec<u64>,
        reason: String,
    },
    /// How many more fds a child taking connections can open, as the shell measured
    /// it for [`Effect::MeasureRoom`]: what is forwarded to it next stays within that
    /// room.
    Room {
        child: ChildId,
        free: u64,
    },
    /// The fds of a state-transfer message from a child ([`ChildMsg::StateGive`],
    /// [`ChildMsg::StateFds`]) came cut short: this process is out of fds. Those that
    /// came are held, as for a whole message, until [`Effect::DropState`].
    StateCut {
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
    /// reading the upgrade state of this version, or why not.
    Probed {
        result: Result<u16, String>,
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
    /// `EXTEND_TIMEOUT_USEC`: a probation of `ms` began, and the reload's verdict (its
    /// `READY=1`) comes at its end.
    Extend { ms: u64 },
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
    /// Tell a client something before its answer ([`Response::OnProbation`]); it goes
    /// on waiting for the answer.
    Interim {
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
        /// The version of the upgrade state to write: the newest the binary reads.
        state_version: u16,
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
    /// Measure how many more fds `child`, which takes connections, can open; answered
    /// by [`Input::Room`] where the system can tell.
    MeasureRoom {
        child: ChildId,
    },
    /// Answer the client with the metrics ([`Response::Metrics`]), which the shell
    /// renders from the state.
    Metrics {
        client: ClientId,
    },
    /// Send `to` the state-transfer message `msg` with the fds of the oldest state
    /// message of `from` that the shell holds ([`transfer`]); the shell's copies are
    /// closed once sent.
    RelayState {
        from: ChildId,
        to: ChildId,
        msg: SupervisorMsg,
    },
    /// Close the fds of the oldest state message of `from` that the shell holds.
    DropState {
        from: ChildId,
    },
}

/// Everything the supervisor knows: one value, which an upgrade hands over.
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub name: String,
    pub pid: u32,
    pub started: SystemTime,
    /// Where the supervisor is in its life.
    pub lifecycle: Lifecycle,
    /// Every child not yet reaped, by id; the lifecycle names the serving and the
    /// incoming one, and every other is winding down or killed.
    pub children: BTreeMap<ChildId, Child>,
    /// Every deadline.
    pub timers: Timers,
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
    /// The executable the supervisor runs.
    pub supervisor_path: PathBuf,
    /// Times the supervisor re-executed itself as a new binary.
    pub upgrades: u64,
    /// What the supervisor did, its last events.
    pub journal: Journal,
    /// What the metrics count.
    pub tally: Tally,
}

/// A reading of the state asked for from outside the loop (a scrape of the metrics),
/// run by the loop between two inputs.
pub(crate) type StateReader = Box<dyn FnOnce(&State) + Send>;

/// A supervisor's state with one child serving, for the tests of what reads it.
#[cfg(all(test, feature = "metrics"))]
pub(crate) fn sample_state() -> State {
    tests::serving_machine().state
}

impl State {
    /// The program that serves, or would (`None` once stopping).
    pub(crate) fn phase_program(&self) -> Option<ProgramRecord> {
        let program = match &self.lifecycle {
            Lifecycle::Serving { child } => self.children.get(child).map(|c| &c.program),
            Lifecycle::BackingOff { program } | Lifecycle::Idle { program } => Some(program),
            Lifecycle::Reloading(reload) => self.slot_program(&reload.old),
            Lifecycle::Upgrading(upgrade) => self.slot_program(&upgrade.serving),
            Lifecycle::Probation(trial) => self.children.get(&trial.new).map(|c| &c.program),
            Lifecycle::Stopping(_) | Lifecycle::Ending { .. } | Lifecycle::Done { .. } => None,
        };
        program.cloned()
    }

    /// The program of what `slot` holds: its child's, or its own.
    fn slot_program<'a>(&'a self, slot: &'a Slot) -> Option<&'a ProgramRecord> {
        match slot {
            Slot::Child(id) => self.children.get(id).map(|c| &c.program),
            other => other.program(),
        }
    }

    /// The child that serves (or is starting to), unless the supervisor is stopping.
    pub(crate) fn serving_id(&self) -> Option<ChildId> {
        match &self.lifecycle {
            Lifecycle::Serving { child }
            | Lifecycle::Reloading(Reload {
                old: Slot::Child(child),
                ..
            })
            | Lifecycle::Upgrading(Upgrade {
                serving: Slot::Child(child),
                ..
            })
            | Lifecycle::Probation(Trial { new: child, .. }) => Some(*child),
            _ => None,
        }
    }

    /// The old child standing by while a new one is on probation.
    pub(crate) fn standby_id(&self) -> Option<ChildId> {
        match &self.lifecycle {
            Lifecycle::Probation(Trial {
                back: Back::Standby(child),
                ..
            }) => Some(*child),
            _ => None,
        }
    }

    /// The new child of the reload under way, once it is started.
    pub(crate) fn incoming_id(&self) -> Option<ChildId> {
        match &self.lifecycle {
            Lifecycle::Reloading(Reload {
                incoming: Incoming::Child(child),
                ..
            }) => Some(*child),
            _ => None,
        }
    }

    /// How many children are serving (ready), starting (the serving one before it is
    /// ready, or a reload's new one), standing by, and retiring, in that order.
    #[cfg(feature = "metrics")]
    pub(crate) fn children_by_state(&self) -> [u64; 4] {
        let mut counts = [0; 4];
        for (id, child) in &self.children {
            let at = match self.role(*id) {
                Role::Serving if child.is_ready() => 0,
                Role::Serving | Role::Incoming => 1,
                Role::Standby => 2,
                Role::Retiring => 3,
            };
            counts[at] += 1;
        }
        counts
    }

    /// What the child is to the supervisor now.
    fn role(&self, id: ChildId) -> Role {
        if self.serving_id() == Some(id) {
            Role::Serving
        } else if self.incoming_id() == Some(id) {
            Role::Incoming
        } else if self.standby_id() == Some(id) {
            Role::Standby
        } else {
            Role::Retiring
        }
    }
}

/// What a child is to the supervisor; it follows from the lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// It serves, or is starting to.
    Serving,
    /// The new child of the reload under way.
    Incoming,
    /// The old child, standing by while the new one is on probation.
    Standby,
    /// Winding down or killed: its exit is what is left.
    Retiring,
}

/// The longest reason a child's `unhealthy` carries into a line.
const MAX_REASON: usize = 200;

/// A reload that is done, as [`Machine::reloaded`] reports it.
struct Reloaded {
    waiter: Option<ClientId>,
    kind: ReloadKind,
    new: ChildId,
    old_pid: Option<u32>,
    ms: u64,
    build_pending: bool,
}

/// What follows a serving child that is gone.
enum Gone {
    /// This serves next (a fallback's child, a restart later, or nothing in dev mode).
    Then(Slot),
    /// The supervisor stops with this exit code.
    Stop(i32),
}

/// The supervisor's state machine.
#[derive(Debug)]
pub(crate) struct Machine {
    settings: Settings,
    state: State,
    effects: VecDeque<Effect>,
    /// Connections moving between children: not in the state an upgrade hands over.
    moves: Moving,
    /// Program states on their way between children: not handed over either.
    transfers: Transfers,
}

/// A child record, not started yet, and the effect that starts it.
fn new_child(
    id: ChildId,
    program: ProgramRecord,
    listeners: Vec<ListenerRecord>,
    lameduck_ms: u64,
    now: Time,
) -> (Child, Effect) {
    let argv = child_argv(&program.args, &listeners);
    let effect = Effect::Spawn {
        child: id,
        program: program.clone(),
        argv: argv.clone(),
    };
    let child = Child {
        id,
        pid: 0,
        program,
        argv,
        listeners,
        started: None,
        started_at: now,
        life: Life::Spawning,
        lameduck_ms,
        killed_because: None,
        finished: None,
        probation: Probation::default(),
        stands_by: false,
        rolled_back: false,
        unwell: None,
    };
    (child, effect)
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
        let first = ChildId(1);
        let supervisor_path = program.path.clone();
        let (child, spawn) =
            new_child(first, program, listeners.clone(), settings.lameduck_ms, now);
        Machine {
            state: State {
                name: settings.name.clone(),
                pid,
                started,
                lifecycle: Lifecycle::Serving { child: first },
                children: BTreeMap::from([(first, child)]),
                timers: Timers::default(),
                listeners,
                previous: None,
                reloads: 0,
                failures: 0,
                restarts: 0,
                backoff_ms: BACKOFF_MIN_MS,
                next_child: first.0,
                announced: false,
                supervisor_path,
                upgrades: 0,
                journal: Journal::default(),
                tally: Tally::default(),
            },
            settings,
            effects: VecDeque::from([spawn]),
            moves: Moving::default(),
            transfers: Transfers::default(),
        }
    }

    /// A supervisor that an [`Effect::Exec`] started: the state of the one before, as
    /// it was; [`Input::Resumed`] comes first.
    pub(crate) fn resume(settings: Settings, state: State, moves: MovesRecord) -> Machine {
        Machine {
            settings,
            state,
            effects: VecDeque::new(),
            moves: Moving::from_record(moves),
            transfers: Transfers::default(),
        }
    }

    /// The whole state (for the handover of an upgrade).
    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// The connections moving between children, as an upgrade hands them over (state
    /// version 2).
    pub(crate) fn moves_record(&self) -> MovesRecord {
        self.moves.record()
    }

    /// Whether an [`Effect::Exec`] is still wanted (nothing cancelled the upgrade).
    pub(crate) fn exec_wanted(&self) -> bool {
        matches!(
            self.state.lifecycle,
            Lifecycle::Upgrading(Upgrade {
                step: UpgradeStep::Exec,
                ..
            })
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
        match &self.state.lifecycle {
            Lifecycle::BackingOff { program } | Lifecycle::Idle { program } => {
                exes.push(program.exe);
            }
            Lifecycle::Reloading(reload) => {
                exes.extend(reload.old.program().map(|p| p.exe));
                let cold = reload.rollback.as_ref();
                exes.extend(cold.and_then(|c| c.previous.as_ref()).map(|p| p.exe));
                if let Incoming::Vetting {
                    program,
                    listeners: vetted,
                } = &reload.incoming
                {
                    exes.push(program.exe);
                    listeners(vetted);
                }
            }
            Lifecycle::Upgrading(upgrade) => {
                exes.extend(upgrade.serving.program().map(|p| p.exe));
                exes.push(upgrade.program.exe);
            }
            // What a rollback goes back to: the binary and the listeners of before.
            Lifecycle::Probation(trial) => {
                if let Back::Cold(program) = &trial.back {
                    exes.push(program.exe);
                }
                exes.extend(trial.previous.iter().map(|p| p.exe));
                listeners(&trial.listeners);
            }
            Lifecycle::Serving { .. }
            | Lifecycle::Stopping(_)
            | Lifecycle::Ending { .. }
            | Lifecycle::Done { .. } => {}
        }
        exes.extend(self.state.previous.iter().map(|p| p.exe));
        keys.extend(exes);
        keys
    }

    /// The next effect to carry out, in order.
    pub(crate) fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The exit code, once the supervisor is done.
    pub(crate) fn done(&self) -> Option<i32> {
        match self.state.lifecycle {
            Lifecycle::Done { code } => Some(code),
            _ => None,
        }
    }

    /// When [`Machine::handle_timeout`] is next due: the timer table's first entry.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.state.timers.next().map(|(at, _)| at)
    }

    /// Every child not yet reaped: the serving one, the incoming one, then those
    /// winding down, oldest first.
    pub(crate) fn children(&self) -> impl Iterator<Item = &Child> {
        let named = [self.state.serving_id(), self.state.incoming_id()];
        let first = named
            .into_iter()
            .flatten()
            .filter_map(|id| self.state.children.get(&id));
        let rest = self
            .state
            .children
            .values()
            .filter(move |c| !named.contains(&Some(c.id)));
        first.chain(rest)
    }

    /// Handles one input at `now`.
    pub(crate) fn handle(&mut self, input: Input, now: Time) {
        if matches!(self.state.lifecycle, Lifecycle::Done { .. }) {
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
            Input::StateCut { child, msg } => self.on_state_cut(child, msg),
            Input::HandRefused { child, ids, reason } => self.on_hand_refused(child, ids, reason),
            Input::Room { child, free } => self.on_room(child, free, now),
            Input::ChannelFailed { child, reason } => self.kill(child, reason),
            Input::Exited { child, status } => self.on_exit(child, status, now),
            Input::Request { client, request } => self.on_request(client, request, now),
            Input::ClientGone { client } => self.on_client_gone(client),
            Input::Prepared { program, listeners } => self.on_prepared(program, listeners, now),
            Input::PrepareFailed { reason, counts } => {
                if let Lifecycle::Reloading(Reload {
                    incoming: Incoming::Preparing,
                    ..
                }) = self.state.lifecycle
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
        // A state's asker may serve now, or be lost, or its giver.
        self.settle_transfers();
        // Room on the way may have been made, or a successor lost.
        self.forward_held(now);
        // An upgrade waiting for the connections on their way may go now.
        self.exec_if_due(now);
        self.check_done();
    }

    /// Acts on every deadline that has passed by `now`, the earliest first.
    pub(crate) fn handle_timeout(&mut self, now: Time) {
        if matches!(self.state.lifecycle, Lifecycle::Done { .. }) {
            return;
        }
        loop {
            let due = self.state.timers.take_due(now);
            if due.is_empty() {
                break;
            }
            let mut recalls = Vec::new();
            for timer in due {
                match timer {
                    Timer::Hello(id) | Timer::Settled(id) | Timer::Ready(id) | Timer::Kill(id) => {
                        self.on_deadline(id, timer, now)
                    }
                    Timer::Recall(ours) => recalls.push(ours),
                    Timer::Exec => self.exec_now(),
                    Timer::Restart => self.restart(now),
                    Timer::Probation => self.pass_probation(None, now),
                    Timer::StateAnswer(asker) => self.state_answer_late(asker),
                }
            }
            self.recall(recalls, now);
        }
        self.settle_transfers();
        self.forward_held(now);
        self.exec_if_due(now);
        self.check_done();
    }

    // --- children -----------------------------------------------------------------

    /// A new child in the table, and the effect that starts it.
    fn spawn(
        &mut self,
        program: ProgramRecord,
        listeners: Vec<ListenerRecord>,
        now: Time,
    ) -> ChildId {
        self.state.next_child += 1;
        let id = ChildId(self.state.next_child);
        let (child, spawn) = new_child(id, program, listeners, self.settings.lameduck_ms, now);
        self.state.children.insert(id, child);
        self.effects.push_back(spawn);
        id
    }

    /// Takes the child out of the table, with its deadlines, its part in the journal's
    /// events and its connections open.
    fn forget(&mut self, id: ChildId) -> Option<Child> {
        self.state.timers.cancel_child(id);
        self.state.journal.links.remove(&id);
        self.state.tally.forget(id);
        self.state.children.remove(&id)
    }

    /// The one place a child's life changes: its deadline goes with it, due at `due`
    /// if the new life has one.
    fn set_life(&mut self, id: ChildId, life: Life, due: Option<Time>) {
        let Some(child) = self.state.children.get_mut(&id) else {
            return;
        };
        child.life = life;
        self.state.timers.cancel_child(id);
        if let (Some(timer), Some(at)) = (life.timer(id), due) {
            self.state.timers.set(timer, at);
        }
    }

    /// SIGKILL to the child's group, once, for `reason`.
    fn kill(&mut self, id: ChildId, reason: String) {
        let Some(child) = self.state.children.get_mut(&id) else {
            return;
        };
        if let Life::Killed { .. } = child.life {
            return;
        }
        child.killed_because.get_or_insert(reason);
        let ready = child.is_ready();
        let program = child.program.clone();
        self.set_life(id, Life::Killed { ready }, None);
        self.effects.push_back(Effect::Kill { child: id });
        // A child standing by that is killed is no longer there to go back to.
        self.standby_lost(id, &program);
    }

    /// Asks the child to wind down; it is killed after its lameduck time. The caller
    /// has moved the lifecycle on: no variant names it any more.
    fn retire(&mut self, id: ChildId, now: Time) {
        let Some(child) = self.state.children.get(&id) else {
            return;
        };
        let kill_at = now.saturating_add(child.lameduck_ms);
        let (life, at, tell) = match child.life {
            Life::Spawning | Life::Started => (Life::Lameduck { welcomed: false }, kill_at, false),
            Life::Settling | Life::AwaitingReady | Life::Ready | Life::Standby => {
                (Life::Lameduck { welcomed: true }, kill_at, true)
            }
            Life::Lameduck { welcomed } => {
                let earlier = self.state.timers.get(Timer::Kill(id)).unwrap_or(kill_at);
                (Life::Lameduck { welcomed }, earlier.min(kill_at), false)
            }
            Life::Killed { .. } => return,
        };
        self.set_life(id, life, Some(at));
        if tell {
            self.effects.push_back(Effect::Send {
                child: id,
                msg: SupervisorMsg::Lameduck,
            });
        }
    }

    fn on_spawned(&mut self, id: ChildId, pid: u32, started: SystemTime, now: Time) {
        self.journal_spawned(id, pid);
        let Some(child) = self.state.children.get_mut(&id) else {
            return;
        };
        child.pid = pid;
        child.started = Some(started);
        let path = child.program.path.display().to_string();
        if child.life == Life::Spawning {
            let hello_by = now.saturating_add(self.settings.hello_timeout_ms);
            self.set_life(id, Life::Started, Some(hello_by));
        }
        match self.state.role(id) {
            Role::Incoming => {
                // A build's reload says one line, when it ends.
                if !self.reloading_build() {
                    self.log(format!("reloading: started pid {pid} ({path})"));
                }
                self.replay_queued(now);
            }
            Role::Serving if !self.state.announced => {
                self.state.announced = true;
                let shown = listeners_shown(&self.state.listeners);
                self.log(format!(
                    "supervisor pid {} started child pid {pid}; listeners {shown}",
                    self.state.pid
                ));
            }
            Role::Serving | Role::Standby | Role::Retiring => {
                self.log(format!("started child pid {pid}"));
            }
        }
    }

    fn on_spawn_failed(&mut self, id: ChildId, reason: String, busy: bool, now: Time) {
        let role = self.state.role(id);
        let Some(child) = self.forget(id) else { return };
        // Dev mode: a build still being written is not complete yet, so not a failure;
        // the watch reports it again once its writer is done.
        let incomplete = busy && self.settings.dev;
        if incomplete {
            self.effects.push_back(Effect::WatchBuildAgain);
        } else {
            self.state.failures += 1;
        }
        match role {
            Role::Incoming if incomplete => {
                let what =
                    "is still being written (executable file busy); it starts once it is complete"
                        .to_string();
                self.reload_failed(reason, what, false, now);
            }
            Role::Incoming => {
                let what = format!("could not be started: {reason}");
                self.reload_failed(reason, what, false, now);
            }
            Role::Serving => {
                let program = child.program;
                if self.settings.dev {
                    self.state.announced = true;
                    self.warn(format!("dev: {reason}; waiting for the next build"));
                    return self.put_serving(Slot::Idle { program }, now);
                }
                self.warn(reason.clone());
                if self.state.announced && self.settings.persist {
                    let path = program.path.display().to_string();
                    self.journal_restart(None, path, reason, now);
                    let delay = self.next_backoff();
                    self.log(format!(
                        "starting it again in {}",
                        human_duration(Duration::from_millis(delay))
                    ));
                    let at = now.saturating_add(delay);
                    self.put_serving(Slot::BackingOff { program, at }, now);
                } else {
                    self.state.announced = true;
                    self.stop_now(1, now);
                }
            }
            Role::Standby | Role::Retiring => {}
        }
    }

    fn on_message(&mut self, id: ChildId, msg: ChildMsg, now: Time) {
        let name = self.settings.name.clone();
        let Some(child) = self.state.children.get(&id).cloned() else {
            return;
        };
        // Protocol 4's hello declares a probation too; before, none.
        let (msg, probation) = match msg {
            ChildMsg::HelloProbation(hello, probation) => (ChildMsg::Hello(hello), probation),
            other => (other, Probation::default()),
        };
        match (msg, child.life) {
            (
                ChildMsg::Hello(hello),
                Life::Started
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
                    return self.kill(id, reason);
                }
                self.effects.push_back(Effect::Welcome {
                    child: id,
                    listeners: child.listeners.clone(),
                });
                self.journal_step(Some(id), Step::Hello, now);
                if let Some(c) = self.state.children.get_mut(&id) {
                    c.lameduck_ms = declared(hello.lameduck_ms);
                    c.probation = Probation {
                        ms: declared(probation.ms),
                        ..probation
                    };
                }
                if let Life::Lameduck { .. } = child.life {
                    // Welcomed now, and told at once; its lameduck deadline stays.
                    if let Some(c) = self.state.children.get_mut(&id) {
                        c.life = Life::Lameduck { welcomed: true };
                    }
                    return self.effects.push_back(Effect::Send {
                        child: id,
                        msg: SupervisorMsg::Lameduck,
                    });
                }
                let ms = Duration::from_millis;
                let wait = until_ready(
                    hello.calls_ready,
                    ms(hello.settle_ms),
                    ms(hello.ready_timeout_ms),
                );
                let due = now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                let life = if hello.calls_ready {
                    Life::AwaitingReady
                } else {
                    Life::Settling
                };
                self.set_life(id, life, Some(due));
            }
            (ChildMsg::Ready, Life::Settling | Life::AwaitingReady) => {
                self.set_life(id, Life::Ready, None);
                self.became_ready(id, now);
            }
            (
                ChildMsg::Ready,
                Life::Ready
                | Life::Standby
                | Life::Lameduck { welcomed: true }
                | Life::Killed { .. },
            ) => {}
            (ChildMsg::CanStandBy, _) if child.welcomed() => {
                if let Some(c) = self.state.children.get_mut(&id) {
                    c.stands_by = true;
                }
            }
            (ChildMsg::Unhealthy { reason }, _) if child.welcomed() => {
                let reason: String = reason.chars().take(MAX_REASON).collect();
                self.on_unhealthy(id, format!("unhealthy: {reason}"), now);
            }
            (ChildMsg::ServesErrors { errors, responses }, _) if child.welcomed() => {
                let share = errors.saturating_mul(100) / responses.max(1);
                let why = format!("5xx share {share}% of {responses} responses");
                self.on_unhealthy(id, why, now);
            }
            (ChildMsg::Counts(counts), _) if child.welcomed() => {
                self.state.tally.report(id, counts);
            }
            (ChildMsg::Adopts { listener }, _) if child.welcomed() => {
                self.on_adopts(id, listener);
            }
            (
                msg @ (ChildMsg::OffersState
                | ChildMsg::StateAsk { .. }
                | ChildMsg::StateGive(_)
                | ChildMsg::StateFds(_)
                | ChildMsg::StateNone { .. }),
                _,
            ) => self.on_state_msg(id, msg, now),
            (ChildMsg::Hand(parcels), _) => self.on_hand(id, parcels, now),
            (ChildMsg::Adopted(ids), _) => self.on_answer(id, ids, true, now),
            (ChildMsg::Declined(ids), _) => self.on_answer(id, ids, false, now),
            (ChildMsg::Finished(result), _) if child.welcomed() => {
                if let Some(c) = self.state.children.get_mut(&id) {
                    c.finished = Some(result);
                }
            }
            (other, _) => {
                self.kill(id, format!("it sent an unexpected message: {other:?}"));
            }
        }
    }

    /// A child's deadline passed (the table hands out each one once).
    fn on_deadline(&mut self, id: ChildId, timer: Timer, now: Time) {
        let Some(child) = self.state.children.get(&id) else {
            return;
        };
        // Deadlines due together are handed out together: one handled before may have
        // moved this child on (a promotion retires the old child whose settle time was
        // due in the same instant). A deadline its life no longer has is void.
        if child.life.timer(id) != Some(timer) {
            return;
        }
        let ran = Duration::from_millis(now.saturating_sub(child.started_at));
        let lameduck = Duration::from_millis(child.lameduck_ms);
        match timer {
            Timer::Hello(_) => {
                let within = human_duration(Duration::from_millis(self.settings.hello_timeout_ms));
                self.kill(id, format!("it did not say hello within {within}"));
            }
            Timer::Ready(_) => {
                let within = human_timeout(ran);
                self.kill(
                    id,
                    format!(
                        "it declares calls_ready = true but did not call ready() within {within}: call lb.ready() once it serves, or drop calls_ready"
                    ),
                );
            }
            Timer::Settled(_) => {
                self.set_life(id, Life::Ready, None);
                self.became_ready(id, now);
            }
            Timer::Kill(_) => {
                let after = human_duration(lameduck);
                self.kill(id, format!("it was still running {after} after lameduck"));
            }
            Timer::Restart
            | Timer::Recall(_)
            | Timer::Exec
            | Timer::Probation
            | Timer::StateAnswer(_) => {}
        }
    }

    fn became_ready(&mut self, id: ChildId, now: Time) {
        self.journal_step(Some(id), Step::Ready, now);
        match self.state.role(id) {
            Role::Incoming => self.promote(now),
            Role::Serving => {
                let pid = self.state.children.get(&id).map_or(0, |c| c.pid);
                self.log(format!("child pid {pid} is ready"));
                let serving = self.serving();
                self.notify(Notice::Ready(serving));
            }
            Role::Standby | Role::Retiring => {}
        }
    }

    /// The new child is ready: it serves, and the old one winds down (or stands by, if
    /// the new one declares a probation). An upgrade's reload goes on to the supervisor.
    fn promote(&mut self, now: Time) {
        let Lifecycle::Reloading(reload) = &self.state.lifecycle else {
            return;
        };
        let Incoming::Child(new_id) = reload.incoming else {
            return;
        };
        let Some(new) = self.state.children.get(&new_id).cloned() else {
            return;
        };
        let reload = reload.clone();
        if reload.kind != ReloadKind::Rollback {
            self.state
                .tally
                .reload_took(now.saturating_sub(reload.since));
        }
        let on_probation = new.probation.ms > 0
            && !self.settings.dev
            && matches!(reload.kind, ReloadKind::Asked | ReloadKind::Upgrade);
        if on_probation {
            return self.begin_probation(reload, &new, now);
        }
        self.state.lifecycle = Lifecycle::Serving { child: new_id };
        let old_pid = match reload.old {
            Slot::Child(old) => {
                let old_child = self.state.children.get(&old);
                let pid = old_child.map_or(0, |c| c.pid);
                self.state.previous = old_child.map(|c| c.program.clone());
                // Before its lameduck: it hands its idle connections over, as many as
                // the new child has room for.
                let part = match reload.kind {
                    ReloadKind::Rollback => Part::Back,
                    _ => Part::Old,
                };
                self.journal_link(old, part, None);
                self.tell_successor(old, new_id);
                self.retire(old, now);
                Some(pid)
            }
            Slot::BackingOff { program, .. }
            | Slot::Exited { program, .. }
            | Slot::Idle { program } => {
                self.state.previous = Some(program);
                None
            }
        };
        self.state.listeners = new.listeners.clone();
        let ms = now.saturating_sub(reload.since);
        if let Some(cold) = reload.rollback {
            self.journal_end(Outcome::Succeeded, None, None, now);
            return self.rolled_back_cold(cold, reload.waiter, &new);
        }
        let line = match reload.kind {
            ReloadKind::Build => {
                let pids = match old_pid {
                    Some(old) => format!("pid {old} -> {}", new.pid),
                    None => format!("pid {}", new.pid),
                };
                Some(format!("dev: new build ready, {pids} in {ms} ms"))
            }
            ReloadKind::Asked | ReloadKind::Rollback => {
                let old_shown = old_pid.map_or_else(|| "none".to_string(), |p| p.to_string());
                Some(format!(
                    "reloaded: pid {old_shown} -> {} in {ms} ms",
                    new.pid
                ))
            }
            ReloadKind::Upgrade => None,
        };
        let done = Reloaded {
            waiter: reload.waiter,
            kind: reload.kind,
            new: new_id,
            old_pid,
            ms,
            build_pending: reload.build_pending,
        };
        self.reloaded(done, line, now);
    }

    /// Tells `old`, about to wind down or stand by, that `successor` takes connections
    /// of these listeners (if it takes any), and has the successor's room measured.
    fn tell_successor(&mut self, old: ChildId, successor: ChildId) {
        if let Some(msg) = self.successor_msg(successor) {
            self.effects
                .push_back(Effect::MeasureRoom { child: successor });
            self.effects.push_back(Effect::Send { child: old, msg });
        }
    }

    /// A reload is done (its new child ready, and its probation passed if it had one):
    /// it counts, and its client is answered; an upgrade's goes on to the supervisor.
    /// `line` is what the log says, if anything.
    fn reloaded(&mut self, done: Reloaded, line: Option<String>, now: Time) {
        self.state.reloads += 1;
        if done.kind != ReloadKind::Upgrade {
            self.journal_end(Outcome::Succeeded, None, Some(done.ms), now);
        }
        let Some(new) = self.state.children.get(&done.new).cloned() else {
            return;
        };
        if done.kind == ReloadKind::Upgrade {
            let old_shown = (done.old_pid).map_or_else(|| "none".to_string(), |p| p.to_string());
            self.log(format!(
                "upgrading: child pid {old_shown} -> {} in {} ms; asking {} to take over the supervisor",
                new.pid,
                done.ms,
                new.program.path.display()
            ));
            self.state.lifecycle = Lifecycle::Upgrading(Upgrade {
                waiter: done.waiter,
                program: new.program.clone(),
                old_pid: done.old_pid,
                new_pid: new.pid,
                ms: done.ms,
                step: UpgradeStep::Probing,
                next_reads: 1,
                from: self.settings.versions.newest,
                serving: Slot::Child(done.new),
                build_pending: done.build_pending,
            });
            return self.effects.push_back(Effect::Probe {
                program: new.program,
            });
        }
        self.state.lifecycle = Lifecycle::Serving { child: done.new };
        if let Some(line) = line {
            self.log(line);
        }
        let serving = self.serving();
        self.notify(Notice::Ready(serving));
        if let Some(client) = done.waiter {
            self.answer(
                client,
                Response::Reloaded {
                    old_pid: done.old_pid,
                    new_pid: new.pid,
                    ms: done.ms,
                },
            );
        }
        self.build_if_pending(done.build_pending, now);
    }

    fn on_exit(&mut self, id: ChildId, status: WaitStatus, now: Time) {
        let role = self.state.role(id);
        if !self.state.children.contains_key(&id) {
            return;
        }
        let moved = self.forget_moves(id);
        // Whatever the program left in its process group goes with it, while its pid
        // (the group's id) still cannot be reused; then it is reaped.
        self.effects.push_back(Effect::Kill { child: id });
        self.effects.push_back(Effect::Reap { child: id });
        self.journal_gone(id, now);
        let Some(child) = self.forget(id) else {
            return;
        };
        let exit = Exit {
            status,
            killed_because: child.killed_because.clone(),
            ran: Duration::from_millis(now.saturating_sub(child.started_at)),
            finished: child.finished.clone(),
        };
        self.state.tally.exited(exit.cause());
        match role {
            Role::Standby => self.standby_exited(&child, &exit),
            Role::Serving if matches!(self.state.lifecycle, Lifecycle::Probation(_)) => {
                self.probation_child_exited(child, exit, now);
            }
            Role::Retiring => {
                if let Lifecycle::Stopping(stop) = &mut self.state.lifecycle {
                    if stop.serving == Some(id) {
                        stop.code = Some(exit.code());
                        let text = format!("child pid {} {}", child.pid, exit.describe());
                        return self.log(text);
                    }
                    if stop.cancelled == Some(id) {
                        let text = format!("new child pid {} {}", child.pid, exit.describe());
                        return self.warn(format!("reload failed: {text}"));
                    }
                }
                // A child rolled back after its probation hands its connections back
                // to the one it was to replace.
                let (who, to) = if child.rolled_back {
                    ("rolled-back child", "back to the child before it")
                } else {
                    ("old child", "to the new child")
                };
                let moved = match moved {
                    Some(1) => format!("; 1 connection moved {to}"),
                    Some(n) => format!("; {n} connections moved {to}"),
                    None => String::new(),
                };
                self.log(format!(
                    "{who} pid {} {}{moved}",
                    child.pid,
                    exit.describe()
                ));
            }
            Role::Incoming => {
                let reason = format!("new child pid {} {}", child.pid, exit.describe());
                let what = format!("pid {} {}", child.pid, exit.before_ready());
                self.state.failures += 1;
                self.reload_failed(reason, what, false, now);
            }
            Role::Serving => {
                let was_ready = child.was_ready();
                if let Lifecycle::Reloading(_) = self.state.lifecycle {
                    self.log(format!(
                        "child pid {} {} during a reload; waiting for the new one",
                        child.pid,
                        exit.describe()
                    ));
                    let exited = Slot::Exited {
                        program: child.program,
                        pid: child.pid,
                        exit,
                        was_ready,
                    };
                    return self.put_serving(exited, now);
                }
                match self.child_gone(child.program, child.pid, exit, was_ready, now) {
                    Gone::Then(slot) => self.put_serving(slot, now),
                    Gone::Stop(code) => self.stop_now(code, now),
                }
            }
        }
    }

    /// The serving child exited on its own: what follows it (a fallback, a restart
    /// later, waiting for a build in dev mode, or a stop).
    fn child_gone(
        &mut self,
        program: ProgramRecord,
        pid: u32,
        exit: Exit,
        was_ready: bool,
        now: Time,
    ) -> Gone {
        if exit.failed() {
            self.state.failures += 1;
        }
        let path = program.path.display().to_string();
        let pids = (Some(pid), None);
        if self.settings.dev {
            self.warn(format!(
                "dev: child pid {pid} {}; the listeners stay open, waiting for the next build",
                exit.describe()
            ));
            self.journal_exit(pid, path, &exit, now);
            return Gone::Then(Slot::Idle { program });
        }
        self.log(format!("child pid {pid} {}", exit.describe()));
        if self.settings.fallback && exit.failed() && was_ready {
            if let Some(previous) = self.state.previous.take() {
                self.log(format!("falling back to {}", previous.path.display()));
                self.state.restarts += 1;
                let to = Some(previous.path.display().to_string());
                let seq =
                    self.journal_event(Kind::Fallback, pids, to, Some(exit.describe()), None, now);
                let child = self.spawn(previous, self.state.listeners.clone(), now);
                self.journal_link(child, Part::New, Some(seq));
                return Gone::Then(Slot::Child(child));
            }
        }
        if self.settings.persist {
            self.journal_restart(Some(pid), path, exit.describe(), now);
            if exit.ran >= BACKOFF_RESET {
                self.state.backoff_ms = BACKOFF_MIN_MS;
            }
            let delay = self.next_backoff();
            self.log(format!(
                "starting it again in {}",
                human_duration(Duration::from_millis(delay))
            ));
            let at = now.saturating_add(delay);
            return Gone::Then(Slot::BackingOff { program, at });
        }
        self.journal_exit(pid, path, &exit, now);
        Gone::Stop(exit.code())
    }

    /// `slot` serves now: in the reload or upgrade under way, or as the lifecycle
    /// itself when nothing is.
    fn put_serving(&mut self, slot: Slot, now: Time) {
        match &mut self.state.lifecycle {
            Lifecycle::Reloading(reload) => reload.old = slot,
            Lifecycle::Upgrading(upgrade) => upgrade.serving = slot,
            Lifecycle::Serving { .. }
            | Lifecycle::BackingOff { .. }
            | Lifecycle::Idle { .. }
            | Lifecycle::Probation(_) => self.settle(slot, now),
            Lifecycle::Stopping(_) | Lifecycle::Ending { .. } | Lifecycle::Done { .. } => {}
        }
    }

    /// Nothing is under way any more: the lifecycle becomes what `slot` says (a reload
    /// or an upgrade that ended hands back what served meanwhile).
    fn settle(&mut self, slot: Slot, now: Time) {
        self.state.timers.cancel(Timer::Restart);
        self.state.lifecycle = match slot {
            Slot::Child(child) => Lifecycle::Serving { child },
            Slot::BackingOff { program, at } => {
                // A restart that waited for a reload is due once it has ended.
                self.state.timers.set(Timer::Restart, at.max(now));
                Lifecycle::BackingOff { program }
            }
            Slot::Idle { program } => Lifecycle::Idle { program },
            // The serving child exited during the reload: what it would have done then.
            Slot::Exited {
                program,
                pid,
                exit,
                was_ready,
            } => match self.child_gone(program, pid, exit, was_ready, now) {
                Gone::Then(slot) => return self.settle(slot, now),
                Gone::Stop(code) => Lifecycle::Stopping(Stop {
                    waiters: Vec::new(),
                    serving: None,
                    cancelled: None,
                    code: Some(code),
                }),
            },
        };
    }

    /// Starts the program that waited out its backoff.
    fn restart(&mut self, now: Time) {
        let Lifecycle::BackingOff { program } = &self.state.lifecycle else {
            return;
        };
        let program = program.clone();
        self.state.restarts += 1;
        let child = self.spawn(program, self.state.listeners.clone(), now);
        let seq = self.state.journal.last_of(Kind::Restart);
        self.journal_link(child, Part::New, seq);
        self.state.lifecycle = Lifecycle::Serving { child };
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
            Request::Stop => self.begin_stop(Some(client), "asked by a client", now),
            Request::Reload(request) => {
                let path = PathBuf::from(OsString::from_vec(request.path));
                let args = request
                    .args
                    .map(|args| args.into_iter().map(OsString::from_vec).collect());
                let overrides = request.listeners;
                self.begin_reload(Some(client), path, args, overrides, ReloadKind::Asked, now);
            }
            Request::Upgrade(request) => self.begin_upgrade(client, request, now),
            Request::Promote => self.promote_asked(client, now),
            Request::Rollback => self.rollback_asked(client, now),
            Request::History => {
                let history = self.state.journal.history();
                self.answer(client, Response::History(history));
            }
            Request::Metrics => self.effects.push_back(Effect::Metrics { client }),
        }
    }

    /// `--littleboss=upgrade`: a reload, then (once its child is ready) the supervisor
    /// itself. Refused while anything else is under way.
    fn begin_upgrade(&mut self, client: ClientId, request: ReloadRequest, now: Time) {
        if let Some(reason) = self.probation_refusal(now) {
            self.warn(format!("upgrade refused: {reason}"));
            return self.answer(client, Response::Refused { reason });
        }
        let name = &self.state.name;
        let refusal = match &self.state.lifecycle {
            lifecycle if lifecycle.stopping() => Some(format!("{name} is stopping")),
            Lifecycle::Upgrading(upgrade) => Some(format!(
                "another upgrade is under way (to {}); try again when it has ended",
                upgrade.program.path.display()
            )),
            Lifecycle::Reloading(_) => {
                Some("a reload is under way; try again when it has ended".to_string())
            }
            _ => None,
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
        let overrides = request.listeners;
        self.begin_reload(
            Some(client),
            path,
            args,
            overrides,
            ReloadKind::Upgrade,
            now,
        );
    }

    /// The new binary said whether it can take over the supervisor: before its child
    /// starts (vetting), and again once it serves.
    fn on_probed(&mut self, result: Result<u16, String>, now: Time) {
        match &mut self.state.lifecycle {
            Lifecycle::Reloading(Reload {
                incoming: Incoming::Vetting { program, listeners },
                ..
            }) => {
                let (program, listeners) = (program.clone(), std::mem::take(listeners));
                match result {
                    Ok(_) => self.start_incoming(program, listeners, now),
                    Err(why) => {
                        let reason = format!(
                            "{} cannot take over the supervisor: {why}; nothing was changed",
                            program.path.display()
                        );
                        self.reload_failed(reason.clone(), reason, false, now);
                    }
                }
            }
            Lifecycle::Upgrading(upgrade) if upgrade.step == UpgradeStep::Probing => match result {
                Ok(reads) => {
                    upgrade.step = UpgradeStep::Exec;
                    upgrade.next_reads = reads;
                    self.exec_when_moved(now);
                }
                Err(why) => {
                    let path = upgrade.program.path.display().to_string();
                    self.upgrade_failed(
                        format!("{path} cannot take over the supervisor: {why}"),
                        now,
                    );
                }
            },
            _ => {}
        }
    }

    /// The child was upgraded but the supervisor cannot be: it runs on as it was, with
    /// the new child.
    fn upgrade_failed(&mut self, why: String, now: Time) {
        let Lifecycle::Upgrading(upgrade) = &self.state.lifecycle else {
            return;
        };
        let upgrade = upgrade.clone();
        self.state.timers.cancel(Timer::Exec);
        self.settle(upgrade.serving.clone(), now);
        let reason = self.upgrade_failure(&upgrade, why);
        self.journal_end(Outcome::Failed, Some(reason.clone()), None, now);
        if !self.state.lifecycle.stopping() {
            let serving = self.serving();
            self.notify(Notice::Ready(serving));
        }
        if let Some(client) = upgrade.waiter {
            self.answer(client, Response::Failed { reason });
        }
        self.build_if_pending(upgrade.build_pending, now);
    }

    /// Says why `upgrade` failed; the reason its client is given.
    fn upgrade_failure(&mut self, upgrade: &Upgrade, why: String) -> String {
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
        reason
    }

    /// This image is the upgrade's binary, with the state of the one before.
    fn on_resumed(&mut self, now: Time) {
        let Lifecycle::Upgrading(
            upgrade @ Upgrade {
                step: UpgradeStep::Exec,
                ..
            },
        ) = &self.state.lifecycle
        else {
            return;
        };
        let upgrade = upgrade.clone();
        self.state.timers.cancel(Timer::Exec);
        self.settle(upgrade.serving.clone(), now);
        self.recall_carried(now);
        self.state.upgrades += 1;
        self.journal_end(Outcome::Succeeded, None, None, now);
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
        self.build_if_pending(upgrade.build_pending, now);
    }

    fn on_client_gone(&mut self, client: ClientId) {
        let forget = |waiter: &mut Option<ClientId>| {
            if *waiter == Some(client) {
                *waiter = None;
            }
        };
        match &mut self.state.lifecycle {
            Lifecycle::Upgrading(upgrade) => forget(&mut upgrade.waiter),
            Lifecycle::Probation(trial) => forget(&mut trial.waiter),
            Lifecycle::Reloading(reload) => {
                forget(&mut reload.waiter);
                if let Some(cold) = &mut reload.rollback {
                    forget(&mut cold.by);
                }
                reload.queued.iter_mut().for_each(|a| forget(&mut a.waiter));
            }
            Lifecycle::Stopping(Stop { waiters, .. }) | Lifecycle::Ending { waiters, .. } => {
                waiters.retain(|w| *w != client)
            }
            Lifecycle::Serving { .. }
            | Lifecycle::BackingOff { .. }
            | Lifecycle::Idle { .. }
            | Lifecycle::Done { .. } => {}
        }
    }

    fn on_signal(&mut self, signal: Signal, now: Time) {
        let name = signal.name();
        match (signal, &self.state.lifecycle) {
            (Signal::Hup, _) => {
                let path = match self.state.phase_program() {
                    Some(program) => {
                        self.log(format!("{name}: reloading"));
                        program.path
                    }
                    None => PathBuf::new(),
                };
                self.begin_reload(None, path, None, Vec::new(), ReloadKind::Asked, now);
            }
            (_, Lifecycle::Ending { .. }) => {}
            (_, Lifecycle::Stopping(_)) => {
                self.log(format!("{name} again: killing the children now"));
                let ids: Vec<ChildId> = self.state.children.keys().copied().collect();
                for id in ids {
                    self.kill(id, format!("{name} arrived twice"));
                }
            }
            (_, _) => {
                self.log(format!("{name}: stopping"));
                self.begin_stop(None, name, now);
            }
        }
    }

    /// Dev mode: a build landed. It reloads the serving program's path with its
    /// arguments, or waits for the reload or upgrade under way to end.
    fn on_build(&mut self, now: Time) {
        if !self.settings.dev {
            return;
        }
        match &mut self.state.lifecycle {
            Lifecycle::Reloading(reload) => reload.build_pending = true,
            Lifecycle::Upgrading(upgrade) => upgrade.build_pending = true,
            // Dev mode has no probation.
            Lifecycle::Probation(_) => {}
            Lifecycle::Serving { .. } | Lifecycle::BackingOff { .. } | Lifecycle::Idle { .. } => {
                if let Some(program) = self.state.phase_program() {
                    let path = program.path;
                    self.begin_reload(None, path, None, Vec::new(), ReloadKind::Build, now);
                }
            }
            Lifecycle::Stopping(_) | Lifecycle::Ending { .. } | Lifecycle::Done { .. } => {}
        }
    }

    /// A reload or an upgrade has ended: the build that landed meanwhile, if one did,
    /// reloads now.
    fn build_if_pending(&mut self, pending: bool, now: Time) {
        if pending {
            self.on_build(now);
        }
    }

    /// Whether the reload under way is to a build that landed.
    fn reloading_build(&self) -> bool {
        matches!(
            &self.state.lifecycle,
            Lifecycle::Reloading(Reload {
                kind: ReloadKind::Build,
                ..
            })
        )
    }

    fn begin_reload(
        &mut self,
        waiter: Option<ClientId>,
        path: PathBuf,
        args: Option<Vec<OsString>>,
        overrides: Vec<(String, String)>,
        kind: ReloadKind,
        now: Time,
    ) {
        if let Some(reason) = self.probation_refusal(now) {
            self.warn(format!("reload refused: {reason}"));
            if let Some(client) = waiter {
                self.answer(client, Response::Refused { reason });
            }
            return;
        }
        let refusal = if self.state.lifecycle.stopping() {
            Some(format!("{} is stopping", self.state.name))
        } else {
            match &mut self.state.lifecycle {
                Lifecycle::Upgrading(upgrade) => Some(format!(
                    "an upgrade is under way (the supervisor becomes {}); try again when it has ended",
                    upgrade.program.path.display()
                )),
                Lifecycle::Reloading(reload) => match reload.incoming {
                    Incoming::Child(id) => Some(format!(
                        "another reload is under way (new child pid {}); try again when it has ended",
                        self.state.children.get(&id).map_or(0, |c| c.pid)
                    )),
                    Incoming::Preparing | Incoming::Vetting { .. } => {
                        reload.queued.push(Asked {
                            waiter,
                            path,
                            args,
                            overrides,
                        });
                        return;
                    }
                },
                _ => None,
            }
        };
        if let Some(reason) = refusal {
            self.warn(format!("reload refused: {reason}"));
            if let Some(client) = waiter {
                self.answer(client, Response::Failed { reason });
            }
            return;
        }
        let Some(serving) = self.state.phase_program() else {
            return;
        };
        let old = match &self.state.lifecycle {
            Lifecycle::Serving { child } => Slot::Child(*child),
            Lifecycle::BackingOff { program } => Slot::BackingOff {
                program: program.clone(),
                // The restart waits for the reload.
                at: self.state.timers.cancel(Timer::Restart).unwrap_or(now),
            },
            Lifecycle::Idle { program } => Slot::Idle {
                program: program.clone(),
            },
            _ => return,
        };
        if kind != ReloadKind::Rollback {
            let old_pid = match &old {
                Slot::Child(child) => self.state.children.get(child).map(|c| c.pid),
                _ => None,
            };
            let shown = path.display().to_string();
            self.journal_reload(kind == ReloadKind::Upgrade, shown, old_pid, now);
        }
        self.state.lifecycle = Lifecycle::Reloading(Reload {
            waiter,
            since: now,
            kind,
            old,
            incoming: Incoming::Preparing,
            queued: Vec::new(),
            build_pending: false,
            rollback: None,
        });
        self.notify(Notice::Reloading);
        self.effects.push_back(Effect::Prepare {
            client: waiter,
            path,
            args: args.unwrap_or(serving.args),
            listeners: self.state.listeners.clone(),
            overrides,
        });
    }

    fn on_prepared(&mut self, program: ProgramRecord, listeners: Vec<ListenerRecord>, now: Time) {
        // A reload cancelled meanwhile: what was opened is not referred to, and closed.
        let Lifecycle::Reloading(
            reload @ Reload {
                incoming: Incoming::Preparing,
                ..
            },
        ) = &mut self.state.lifecycle
        else {
            return;
        };
        let upgrade = reload.kind == ReloadKind::Upgrade;
        self.journal_step(None, Step::Opened, now);
        if upgrade {
            if let Lifecycle::Reloading(reload) = &mut self.state.lifecycle {
                reload.incoming = Incoming::Vetting {
                    program: program.clone(),
                    listeners,
                };
            }
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
        if !matches!(self.state.lifecycle, Lifecycle::Reloading(_)) {
            return;
        }
        let child = self.spawn(program, listeners, now);
        self.journal_link(child, Part::New, None);
        if let Lifecycle::Reloading(reload) = &mut self.state.lifecycle {
            reload.incoming = Incoming::Child(child);
        }
    }

    /// The reload under way failed, with no new child left: the serving child never
    /// noticed. `what` is how a build's line says it (`pid 4311 exited with code 101
    /// before it was ready`).
    fn reload_failed(&mut self, reason: String, what: String, counts: bool, now: Time) {
        let Lifecycle::Reloading(reload) = &self.state.lifecycle else {
            return;
        };
        let reload = reload.clone();
        if counts {
            self.state.failures += 1;
        }
        let reason = match &reload.rollback {
            Some(cold) => self.cold_rollback_failed(cold, &reload.old, &reason),
            None => {
                self.state.tally.reloads_failed += 1;
                reason
            }
        };
        self.journal_end(Outcome::Failed, Some(reason.clone()), None, now);
        if reload.kind == ReloadKind::Build {
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
        self.settle(reload.old, now);
        self.replay(reload.queued, now);
        self.build_if_pending(reload.build_pending, now);
    }

    /// The reloads queued behind the one under way, asked again now that it has a
    /// child (they are refused, naming it).
    fn replay_queued(&mut self, now: Time) {
        let queued = match &mut self.state.lifecycle {
            Lifecycle::Reloading(reload) => std::mem::take(&mut reload.queued),
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
                ReloadKind::Asked,
                now,
            );
        }
    }

    /// Stops, for `why` (a signal's name, or a client's request).
    fn begin_stop(&mut self, waiter: Option<ClientId>, why: &str, now: Time) {
        if let Lifecycle::Stopping(Stop { waiters, .. }) | Lifecycle::Ending { waiters, .. } =
            &mut self.state.lifecycle
        {
            waiters.extend(waiter);
            return;
        }
        self.notify(Notice::Stopping);
        self.enter_stopping(waiter, None, why.to_string(), now);
    }

    /// Stops with `code` because the serving child is gone and nothing follows it.
    fn stop_now(&mut self, code: i32, now: Time) {
        let why = format!("nothing is left to serve (exit code {code})");
        self.enter_stopping(None, Some(code), why, now);
    }

    /// Every child winds down: the serving one gets lameduck, a new one of a reload is
    /// killed (and the reload's client told), an upgrade is cancelled, nothing starts
    /// again.
    fn enter_stopping(
        &mut self,
        waiter: Option<ClientId>,
        code: Option<i32>,
        why: String,
        now: Time,
    ) {
        if self.state.lifecycle.stopping() {
            return;
        }
        let serving = self.serving_child().map(|c| c.pid);
        let cancelled = format!("cancelled: {} is stopping", self.state.name);
        self.journal_end(Outcome::Failed, Some(cancelled.clone()), None, now);
        self.journal_event(Kind::Stop, (serving, None), None, Some(why), None, now);
        let stopping = Lifecycle::Stopping(Stop {
            waiters: waiter.into_iter().collect(),
            serving: None,
            cancelled: None,
            code,
        });
        let before = std::mem::replace(&mut self.state.lifecycle, stopping);
        let mut killed = None;
        let serving = match before {
            Lifecycle::Serving { child } => Slot::Child(child),
            Lifecycle::BackingOff { program } => {
                let at = self.state.timers.cancel(Timer::Restart).unwrap_or(now);
                Slot::BackingOff { program, at }
            }
            Lifecycle::Idle { program } => Slot::Idle { program },
            Lifecycle::Upgrading(upgrade) => {
                self.state.timers.cancel(Timer::Exec);
                let reason = self.upgrade_failure(&upgrade, cancelled.clone());
                if let Some(client) = upgrade.waiter {
                    self.answer(client, Response::Failed { reason });
                }
                upgrade.serving
            }
            Lifecycle::Probation(trial) => {
                if let Some(client) = trial.waiter {
                    let reason = cancelled.clone();
                    self.answer(client, Response::Failed { reason });
                }
                self.state.timers.cancel(Timer::Probation);
                // Both children wind down; the new one's exit code is the stop's.
                if let Back::Standby(old) = trial.back {
                    self.retire(old, now);
                }
                Slot::Child(trial.new)
            }
            Lifecycle::Reloading(reload) => {
                let waiters = reload.queued.iter().filter_map(|a| a.waiter);
                // A cold rollback's `rollback` client too.
                let by = reload.rollback.as_ref().and_then(|c| c.by);
                for client in reload.waiter.into_iter().chain(waiters).chain(by) {
                    let reason = cancelled.clone();
                    self.answer(client, Response::Failed { reason });
                }
                if let Incoming::Child(incoming) = reload.incoming {
                    killed = Some(incoming);
                    self.kill(incoming, "the supervisor is stopping".to_string());
                }
                reload.old
            }
            Lifecycle::Stopping(_) | Lifecycle::Ending { .. } | Lifecycle::Done { .. } => return,
        };
        let (serving, exited) = match serving {
            Slot::Child(child) if self.state.children.contains_key(&child) => {
                self.retire(child, now);
                (Some(child), None)
            }
            Slot::Exited { exit, .. } => (None, Some(exit.code())),
            Slot::Child(_) | Slot::BackingOff { .. } | Slot::Idle { .. } => (None, None),
        };
        if let Lifecycle::Stopping(stop) = &mut self.state.lifecycle {
            stop.serving = serving;
            stop.cancelled = killed;
            stop.code = stop.code.or(exited);
        }
    }

    /// Once it is stopping and no child is left: closes the listeners and ends what
    /// the service left behind.
    fn check_done(&mut self) {
        let Lifecycle::Stopping(stop) = &self.state.lifecycle else {
            return;
        };
        if !self.state.children.is_empty() {
            return;
        }
        self.state.lifecycle = Lifecycle::Ending {
            waiters: stop.waiters.clone(),
            code: stop.code.unwrap_or(0),
        };
        self.effects.push_back(Effect::Close);
        self.effects.push_back(Effect::EndDescendants);
    }

    /// The service's last processes are gone (or could not all be ended): the
    /// supervisor is done, with the exit code the stop is answered with.
    fn on_descendants_ended(&mut self, ended: bool) {
        let Lifecycle::Ending { waiters, code } = &self.state.lifecycle else {
            return;
        };
        let code = if !ended && *code == 0 { 1 } else { *code };
        let waiters = waiters.clone();
        self.state.lifecycle = Lifecycle::Done { code };
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
        let id = match &self.state.lifecycle {
            Lifecycle::Stopping(stop) => stop.serving,
            _ => self.state.serving_id(),
        };
        self.state.children.get(&id?)
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

    /// `starting`, `running`, `reloading`, `probation`, `upgrading`, `idle` (dev mode, no
    /// child) or `stopping`.
    fn phase_name(&self) -> &'static str {
        match &self.state.lifecycle {
            Lifecycle::Upgrading(_) => "upgrading",
            Lifecycle::Probation(_) => "probation",
            Lifecycle::Reloading(_) => "reloading",
            Lifecycle::Serving { child } => match self.state.children.get(child) {
                Some(c) if c.is_ready() => "running",
                _ => "starting",
            },
            Lifecycle::Idle { .. } => "idle",
            Lifecycle::BackingOff { .. } => "starting",
            Lifecycle::Stopping(_) | Lifecycle::Ending { .. } | Lifecycle::Done { .. } => {
                "stopping"
            }
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
            standby_pid: (self.state.standby_id())
                .and_then(|id| self.state.children.get(&id))
                .map(|c| c.pid),
            probation_ends: self.probation_ends().map(rfc3339),
            // The journal keeps it across an upgrade, which hands no transfer over.
            last_reload_state_bytes: (self.transfers.last_bytes(self.state.serving_id()))
                .or_else(|| self.state.journal.state_taken(self.state.serving_id())),
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
