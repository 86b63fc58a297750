//! The handover in the layout of state version 1 ([`HandoverV1`]): the conversions
//! between the machine's state and the frozen layout in
//! [`wire::state_v1`](crate::wire::state_v1).

use crate::control::protocol::{Probation, Versions};
use crate::socket::{BoundAddr, SocketFile};
use crate::spec::Network;
use std::collections::BTreeMap;

use crate::supervisor::machine::journal::Journal;
use crate::supervisor::machine::tally::Tally;
use crate::supervisor::machine::{
    Asked, Child, ChildId, ClientId, Exit, Incoming, Life, Lifecycle, MovesRecord, Reload,
    ReloadKind, Slot, State, Stop, Timer, Timers, Upgrade, UpgradeStep, WaitStatus,
};
use crate::supervisor::state::{ListenerRecord, ProgramRecord};
use crate::wire::state_v1::{
    AskedV1, BoundAddrV1, ChildV1, CurrentV1, ExitV1, HandoverV1, HeldChildV1, HeldClientV1,
    HeldFdV1, IncomingV1, LifeV1, ListenerRecordV1, NetworkV1, PhaseV1, ProgramRecordV1, ReloadV1,
    SocketFileV1, StateV1, UpgradeStepV1, UpgradeV1, VersionsV1, WaitStatusV1,
};

use super::{Handover, HeldChild, HeldClient, HeldFd};

/// What the machine holds that version 1 cannot carry.
pub(crate) type Unfit = String;

impl HandoverV1 {
    /// The layout of `handover`; an error names what it cannot carry.
    pub(crate) fn from_handover(h: &Handover) -> Result<HandoverV1, Unfit> {
        Ok(HandoverV1 {
            versions: VersionsV1 {
                oldest: h.versions.oldest,
                newest: h.versions.newest,
            },
            now: h.now,
            dev: h.dev,
            state: StateV1::from_state(&h.state)?,
            fds: h
                .fds
                .iter()
                .map(|f| HeldFdV1 {
                    key: f.key,
                    fd: f.fd,
                    file: f.file.as_ref().map(|file| {
                        let (path, dev, ino) = file.parts();
                        SocketFileV1 {
                            path: path.to_path_buf(),
                            dev,
                            ino,
                        }
                    }),
                })
                .collect(),
            children: h
                .children
                .iter()
                .map(|c| HeldChildV1 {
                    id: c.id.0,
                    pid: c.pid,
                    channel: c.channel,
                    pidfd: c.pidfd,
                    version: c.version,
                })
                .collect(),
            control: h.control,
            socket: h.socket.clone(),
            lock: h.lock,
            clients: h
                .clients
                .iter()
                .map(|c| HeldClientV1 {
                    id: c.id.0,
                    fd: c.fd,
                    version: c.version,
                })
                .collect(),
            next_client: h.next_client,
            args: h.args.clone(),
        })
    }

    /// The handover this layout holds.
    pub(crate) fn into_handover(self) -> Handover {
        Handover {
            versions: Versions {
                oldest: self.versions.oldest,
                newest: self.versions.newest,
            },
            now: self.now,
            dev: self.dev,
            state: self.state.into_state(),
            fds: self
                .fds
                .into_iter()
                .map(|f| HeldFd {
                    key: f.key,
                    fd: f.fd,
                    file: f
                        .file
                        .map(|file| SocketFile::from_parts(file.path, file.dev, file.ino)),
                })
                .collect(),
            children: self
                .children
                .into_iter()
                .map(|c| HeldChild {
                    id: ChildId(c.id),
                    pid: c.pid,
                    channel: c.channel,
                    pidfd: c.pidfd,
                    version: c.version,
                })
                .collect(),
            control: self.control,
            socket: self.socket,
            lock: self.lock,
            clients: self
                .clients
                .into_iter()
                .map(|c| HeldClient {
                    id: ClientId(c.id),
                    fd: c.fd,
                    version: c.version,
                })
                .collect(),
            next_client: self.next_client,
            args: self.args,
            moves: MovesRecord::default(),
        }
    }
}

impl StateV1 {
    fn from_state(s: &State) -> Result<StateV1, Unfit> {
        let child = |id: ChildId| -> Result<ChildV1, Unfit> {
            let c = s
                .children
                .get(&id)
                .ok_or_else(|| format!("child {} is named but not known", id.0))?;
            ChildV1::from_child(c, &s.timers)
        };
        let current = |slot: &Slot| -> Result<CurrentV1, Unfit> {
            Ok(match slot {
                Slot::Child(id) => CurrentV1::Child(child(*id)?),
                Slot::BackingOff { program, at } => CurrentV1::Backoff {
                    program: ProgramRecordV1::from_record(program),
                    at: *at,
                },
                Slot::Exited {
                    program,
                    pid,
                    exit,
                    was_ready,
                } => CurrentV1::Exited {
                    program: ProgramRecordV1::from_record(program),
                    pid: *pid,
                    exit: ExitV1::from_exit(exit),
                    was_ready: *was_ready,
                },
                Slot::Idle { program } => CurrentV1::Idle {
                    program: ProgramRecordV1::from_record(program),
                },
            })
        };
        let up = |current, reload| PhaseV1::Up { current, reload };
        let (phase, build_pending, upgrade) = match &s.lifecycle {
            Lifecycle::Serving { child } => (up(current(&Slot::Child(*child))?, None), false, None),
            Lifecycle::BackingOff { program } => {
                let at = s
                    .timers
                    .get(Timer::Restart)
                    .ok_or("the state has no time for its restart")?;
                let program = program.clone();
                (
                    up(current(&Slot::BackingOff { program, at })?, None),
                    false,
                    None,
                )
            }
            Lifecycle::Idle { program } => {
                let program = program.clone();
                (up(current(&Slot::Idle { program })?, None), false, None)
            }
            Lifecycle::Reloading(r) => {
                let reload = ReloadV1 {
                    waiter: r.waiter.map(|w| w.0),
                    since: r.since,
                    incoming: match &r.incoming {
                        Incoming::Preparing | Incoming::Vetting { .. } => IncomingV1::Preparing,
                        Incoming::Child(id) => IncomingV1::Child(child(*id)?),
                    },
                    queued: r
                        .queued
                        .iter()
                        .map(|a| AskedV1 {
                            waiter: a.waiter.map(|w| w.0),
                            path: a.path.clone(),
                            args: a.args.clone(),
                            overrides: a.overrides.clone(),
                        })
                        .collect(),
                    build: r.kind == ReloadKind::Build,
                    upgrade: r.kind == ReloadKind::Upgrade,
                    vetting: match &r.incoming {
                        Incoming::Vetting { program, listeners } => Some((
                            ProgramRecordV1::from_record(program),
                            listeners_v1(listeners)?,
                        )),
                        Incoming::Preparing | Incoming::Child(_) => None,
                    },
                };
                (up(current(&r.old)?, Some(reload)), r.build_pending, None)
            }
            Lifecycle::Upgrading(u) => {
                let upgrade = UpgradeV1 {
                    waiter: u.waiter.map(|w| w.0),
                    program: ProgramRecordV1::from_record(&u.program),
                    old_pid: u.old_pid,
                    new_pid: u.new_pid,
                    ms: u.ms,
                    step: match u.step {
                        UpgradeStep::Probing => UpgradeStepV1::Probing,
                        UpgradeStep::Exec => UpgradeStepV1::Exec,
                    },
                    from: u.from,
                };
                (
                    up(current(&u.serving)?, None),
                    u.build_pending,
                    Some(upgrade),
                )
            }
            Lifecycle::Stopping(stop) => (
                PhaseV1::Stopping {
                    waiters: stop.waiters.iter().map(|w| w.0).collect(),
                    serving: stop.serving.map(|c| c.0),
                    cancelled: stop.cancelled.map(|c| c.0),
                    code: stop.code,
                },
                false,
                None,
            ),
            // Version 1 has no such phase; no exec happens in it, so a stopping
            // state with no child left stands for it.
            Lifecycle::Ending { waiters, code } => (
                PhaseV1::Stopping {
                    waiters: waiters.iter().map(|w| w.0).collect(),
                    serving: None,
                    cancelled: None,
                    code: Some(*code),
                },
                false,
                None,
            ),
            Lifecycle::Done { code } => (PhaseV1::Done { code: *code }, false, None),
            // Never at an upgrade's exec: it re-executes once its child's probation has
            // passed, and a reload or an upgrade is refused during one.
            Lifecycle::Probation(_) => return Err("a probation is under way".to_string()),
        };
        // Version 1 keeps the children no phase names in a list of their own.
        let named = [s.serving_id(), s.incoming_id()];
        let retiring = s
            .children
            .keys()
            .filter(|id| !named.contains(&Some(**id)))
            .map(|id| child(*id))
            .collect::<Result<_, _>>()?;
        Ok(StateV1 {
            name: s.name.clone(),
            pid: s.pid,
            started: s.started,
            phase,
            retiring,
            listeners: listeners_v1(&s.listeners)?,
            previous: s.previous.as_ref().map(ProgramRecordV1::from_record),
            reloads: s.reloads,
            failures: s.failures,
            restarts: s.restarts,
            backoff_ms: s.backoff_ms,
            next_child: s.next_child,
            announced: s.announced,
            build_pending,
            supervisor_path: s.supervisor_path.clone(),
            upgrades: s.upgrades,
            upgrade,
        })
    }

    fn into_state(self) -> State {
        let mut table = Table::default();
        let lifecycle = match self.phase {
            PhaseV1::Up {
                current,
                reload: Some(r),
            } => {
                let kind = match (r.upgrade, r.build) {
                    (true, _) => ReloadKind::Upgrade,
                    (false, true) => ReloadKind::Build,
                    (false, false) => ReloadKind::Asked,
                };
                let incoming = match (r.incoming, r.vetting) {
                    (IncomingV1::Child(child), _) => Incoming::Child(table.put(child)),
                    (IncomingV1::Preparing, Some((program, listeners))) => Incoming::Vetting {
                        program: program.into_record(),
                        listeners: listeners_from_v1(listeners),
                    },
                    (IncomingV1::Preparing, None) => Incoming::Preparing,
                };
                Lifecycle::Reloading(Reload {
                    waiter: r.waiter.map(ClientId),
                    since: r.since,
                    kind,
                    old: table.slot(current),
                    incoming,
                    queued: r
                        .queued
                        .into_iter()
                        .map(|a| Asked {
                            waiter: a.waiter.map(ClientId),
                            path: a.path,
                            args: a.args,
                            overrides: a.overrides,
                        })
                        .collect(),
                    build_pending: self.build_pending,
                    rollback: None,
                })
            }
            PhaseV1::Up {
                current,
                reload: None,
            } => match self.upgrade {
                Some(u) => Lifecycle::Upgrading(Upgrade {
                    waiter: u.waiter.map(ClientId),
                    program: u.program.into_record(),
                    old_pid: u.old_pid,
                    new_pid: u.new_pid,
                    ms: u.ms,
                    step: match u.step {
                        UpgradeStepV1::Probing => UpgradeStep::Probing,
                        UpgradeStepV1::Exec => UpgradeStep::Exec,
                    },
                    next_reads: 1,
                    from: u.from,
                    serving: table.slot(current),
                    build_pending: self.build_pending,
                }),
                None => match table.slot(current) {
                    Slot::Child(child) => Lifecycle::Serving { child },
                    Slot::BackingOff { program, at } => {
                        table.timers.set(Timer::Restart, at);
                        Lifecycle::BackingOff { program }
                    }
                    // Written only during a reload; a restart at once stands for it.
                    Slot::Exited { program, .. } => {
                        table.timers.set(Timer::Restart, 0);
                        Lifecycle::BackingOff { program }
                    }
                    Slot::Idle { program } => Lifecycle::Idle { program },
                },
            },
            PhaseV1::Stopping {
                waiters,
                serving,
                cancelled,
                code,
            } => Lifecycle::Stopping(Stop {
                waiters: waiters.into_iter().map(ClientId).collect(),
                serving: serving.map(ChildId),
                cancelled: cancelled.map(ChildId),
                code,
            }),
            PhaseV1::Done { code } => Lifecycle::Done { code },
        };
        for child in self.retiring {
            table.put(child);
        }
        State {
            name: self.name,
            pid: self.pid,
            started: self.started,
            lifecycle,
            children: table.children,
            timers: table.timers,
            listeners: listeners_from_v1(self.listeners),
            previous: self.previous.map(ProgramRecordV1::into_record),
            reloads: self.reloads,
            failures: self.failures,
            restarts: self.restarts,
            backoff_ms: self.backoff_ms,
            next_child: self.next_child,
            announced: self.announced,
            supervisor_path: self.supervisor_path,
            upgrades: self.upgrades,
            // Versions 1 to 3 carry neither: the journal and the tally start anew.
            journal: Journal::default(),
            tally: Tally::default(),
        }
    }
}

/// The children and deadlines of a state being read: version 1 keeps each child's
/// deadline in its life.
#[derive(Default)]
struct Table {
    children: BTreeMap<ChildId, Child>,
    timers: Timers,
}

impl Table {
    fn put(&mut self, child: ChildV1) -> ChildId {
        let (child, due) = child.into_child();
        if let (Some(timer), Some(at)) = (child.life.timer(child.id), due) {
            self.timers.set(timer, at);
        }
        let id = child.id;
        self.children.insert(id, child);
        id
    }

    fn slot(&mut self, current: CurrentV1) -> Slot {
        match current {
            CurrentV1::Child(child) => Slot::Child(self.put(child)),
            CurrentV1::Backoff { program, at } => Slot::BackingOff {
                program: program.into_record(),
                at,
            },
            CurrentV1::Exited {
                program,
                pid,
                exit,
                was_ready,
            } => Slot::Exited {
                program: program.into_record(),
                pid,
                exit: exit.into_exit(),
                was_ready,
            },
            CurrentV1::Idle { program } => Slot::Idle {
                program: program.into_record(),
            },
        }
    }
}

impl ChildV1 {
    fn from_child(c: &Child, timers: &Timers) -> Result<ChildV1, Unfit> {
        let due = |timer: Option<Timer>| {
            timer
                .and_then(|t| timers.get(t))
                .ok_or_else(|| format!("child {} has no deadline for its life", c.id.0))
        };
        let deadline = due(c.life.timer(c.id));
        Ok(ChildV1 {
            id: c.id.0,
            pid: c.pid,
            program: ProgramRecordV1::from_record(&c.program),
            argv: c.argv.clone(),
            listeners: listeners_v1(&c.listeners)?,
            started: c.started,
            started_at: c.started_at,
            life: match c.life {
                Life::Spawning => LifeV1::Spawning,
                Life::Started => LifeV1::Started { by: deadline? },
                Life::Settling => LifeV1::Settling { at: deadline? },
                Life::AwaitingReady => LifeV1::AwaitingReady { by: deadline? },
                Life::Ready => LifeV1::Ready,
                // Never at an upgrade's exec: it comes after the probation.
                Life::Standby => {
                    return Err(format!("child {} stands by for a probation", c.id.0));
                }
                Life::Lameduck { welcomed } => LifeV1::Lameduck {
                    kill_at: deadline?,
                    welcomed,
                },
                Life::Killed { .. } => LifeV1::Killed,
            },
            lameduck_ms: c.lameduck_ms,
            killed_because: c.killed_because.clone(),
            finished: c.finished.clone(),
        })
    }

    /// The child, and the deadline of its life, if it has one.
    fn into_child(self) -> (Child, Option<u64>) {
        let (life, due) = match self.life {
            LifeV1::Spawning => (Life::Spawning, None),
            LifeV1::Started { by } => (Life::Started, Some(by)),
            LifeV1::Settling { at } => (Life::Settling, Some(at)),
            LifeV1::AwaitingReady { by } => (Life::AwaitingReady, Some(by)),
            LifeV1::Ready => (Life::Ready, None),
            LifeV1::Lameduck { kill_at, welcomed } => (Life::Lameduck { welcomed }, Some(kill_at)),
            // Version 1 does not say whether it was ready.
            LifeV1::Killed => (Life::Killed { ready: false }, None),
        };
        let child = Child {
            id: ChildId(self.id),
            pid: self.pid,
            program: self.program.into_record(),
            argv: self.argv,
            listeners: listeners_from_v1(self.listeners),
            started: self.started,
            started_at: self.started_at,
            life,
            lameduck_ms: self.lameduck_ms,
            killed_because: self.killed_because,
            finished: self.finished,
            // Neither is in the state (version 1 or 2): a child inherited from an
            // earlier image has no probation pending and is not known to stand by, so
            // a probation after the upgrade rolls back cold.
            probation: Probation::default(),
            stands_by: false,
            rolled_back: false,
            unwell: None,
        };
        (child, due)
    }
}

impl ExitV1 {
    fn from_exit(e: &Exit) -> ExitV1 {
        ExitV1 {
            status: match e.status {
                WaitStatus::Code(code) => WaitStatusV1::Code(code),
                WaitStatus::Signal(signal) => WaitStatusV1::Signal(signal),
                WaitStatus::Unknown => WaitStatusV1::Unknown,
            },
            killed_because: e.killed_because.clone(),
            ran: e.ran,
            finished: e.finished.clone(),
        }
    }

    fn into_exit(self) -> Exit {
        Exit {
            status: match self.status {
                WaitStatusV1::Code(code) => WaitStatus::Code(code),
                WaitStatusV1::Signal(signal) => WaitStatus::Signal(signal),
                WaitStatusV1::Unknown => WaitStatus::Unknown,
            },
            killed_because: self.killed_because,
            ran: self.ran,
            finished: self.finished,
        }
    }
}

fn listeners_v1(listeners: &[ListenerRecord]) -> Result<Vec<ListenerRecordV1>, Unfit> {
    listeners
        .iter()
        .map(|l| {
            Ok(ListenerRecordV1 {
                name: l.name.clone(),
                network: network_v1(l.network)?,
                bound: l.bound.as_ref().map(|(addr, key)| {
                    let addr = match addr {
                        BoundAddr::Ip(ip) => BoundAddrV1::Ip(*ip),
                        BoundAddr::Unix(path) => BoundAddrV1::Unix(path.clone()),
                    };
                    (addr, *key)
                }),
            })
        })
        .collect()
}

fn listeners_from_v1(listeners: Vec<ListenerRecordV1>) -> Vec<ListenerRecord> {
    listeners
        .into_iter()
        .map(|l| ListenerRecord {
            name: l.name,
            network: match l.network {
                NetworkV1::Tcp => Network::Tcp,
                NetworkV1::Tcp4 => Network::Tcp4,
                NetworkV1::Tcp6 => Network::Tcp6,
                NetworkV1::Udp => Network::Udp,
                NetworkV1::Udp4 => Network::Udp4,
                NetworkV1::Udp6 => Network::Udp6,
                NetworkV1::Unix => Network::Unix,
            },
            bound: l.bound.map(|(addr, key)| {
                let addr = match addr {
                    BoundAddrV1::Ip(ip) => BoundAddr::Ip(ip),
                    BoundAddrV1::Unix(path) => BoundAddr::Unix(path),
                };
                (addr, key)
            }),
        })
        .collect()
}

fn network_v1(network: Network) -> Result<NetworkV1, Unfit> {
    Ok(match network {
        Network::Tcp => NetworkV1::Tcp,
        Network::Tcp4 => NetworkV1::Tcp4,
        Network::Tcp6 => NetworkV1::Tcp6,
        Network::Udp => NetworkV1::Udp,
        Network::Udp4 => NetworkV1::Udp4,
        Network::Udp6 => NetworkV1::Udp6,
        Network::Unix => NetworkV1::Unix,
        other => return Err(format!("state version 1 has no network {other}")),
    })
}

impl ProgramRecordV1 {
    fn from_record(p: &ProgramRecord) -> ProgramRecordV1 {
        ProgramRecordV1 {
            path: p.path.clone(),
            args: p.args.clone(),
            exe: p.exe,
        }
    }

    fn into_record(self) -> ProgramRecord {
        ProgramRecord {
            path: self.path,
            args: self.args,
            exe: self.exe,
        }
    }
}

/// The state as the next image reads it: written in version 1's layout and read back.
/// The machine's tests play an upgrade's exec with it.
#[cfg(test)]
pub(crate) fn through_v1(state: &State) -> State {
    let read: StateV1 = postcard::from_bytes(&v1_bytes(state)).expect("and reads back");
    read.into_state()
}

/// The state in version 1's layout: the machine's tests check after every step that
/// it reads back as the same state (the same bytes again).
#[cfg(test)]
pub(crate) fn v1_bytes(state: &State) -> Vec<u8> {
    let layout = StateV1::from_state(state).expect("the state fits version 1");
    postcard::to_stdvec(&layout).expect("the state serializes")
}
