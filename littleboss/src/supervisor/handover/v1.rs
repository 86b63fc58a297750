//! The handover in the layout of state version 1 ([`HandoverV1`]): the conversions
//! between the machine's state and the frozen layout in
//! [`wire::state_v1`](crate::wire::state_v1).

use crate::control::protocol::Versions;
use crate::socket::{BoundAddr, SocketFile};
use crate::spec::Network;
use crate::supervisor::machine::{
    Asked, Child, ChildId, ClientId, Current, Exit, Incoming, Life, Phase, Reload, State, Upgrade,
    UpgradeStep, WaitStatus,
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
        }
    }
}

impl StateV1 {
    fn from_state(s: &State) -> Result<StateV1, Unfit> {
        Ok(StateV1 {
            name: s.name.clone(),
            pid: s.pid,
            started: s.started,
            phase: PhaseV1::from_phase(&s.phase)?,
            retiring: s
                .retiring
                .iter()
                .map(ChildV1::from_child)
                .collect::<Result<_, _>>()?,
            listeners: listeners_v1(&s.listeners)?,
            previous: s.previous.as_ref().map(ProgramRecordV1::from_record),
            reloads: s.reloads,
            failures: s.failures,
            restarts: s.restarts,
            backoff_ms: s.backoff_ms,
            next_child: s.next_child,
            announced: s.announced,
            build_pending: s.build_pending,
            supervisor_path: s.supervisor_path.clone(),
            upgrades: s.upgrades,
            upgrade: s.upgrade.as_ref().map(UpgradeV1::from_upgrade),
        })
    }

    fn into_state(self) -> State {
        State {
            name: self.name,
            pid: self.pid,
            started: self.started,
            phase: self.phase.into_phase(),
            retiring: self.retiring.into_iter().map(ChildV1::into_child).collect(),
            listeners: listeners_from_v1(self.listeners),
            previous: self.previous.map(ProgramRecordV1::into_record),
            reloads: self.reloads,
            failures: self.failures,
            restarts: self.restarts,
            backoff_ms: self.backoff_ms,
            next_child: self.next_child,
            announced: self.announced,
            build_pending: self.build_pending,
            supervisor_path: self.supervisor_path,
            upgrades: self.upgrades,
            upgrade: self.upgrade.map(UpgradeV1::into_upgrade),
        }
    }
}

impl PhaseV1 {
    fn from_phase(p: &Phase) -> Result<PhaseV1, Unfit> {
        Ok(match p {
            Phase::Up { current, reload } => PhaseV1::Up {
                current: CurrentV1::from_current(current)?,
                reload: reload.as_ref().map(ReloadV1::from_reload).transpose()?,
            },
            Phase::Stopping {
                waiters,
                serving,
                cancelled,
                code,
            } => PhaseV1::Stopping {
                waiters: waiters.iter().map(|w| w.0).collect(),
                serving: serving.map(|c| c.0),
                cancelled: cancelled.map(|c| c.0),
                code: *code,
            },
            // Version 1 has no such phase; no exec happens in it, so a stopping
            // state with no child left stands for it.
            Phase::Ending { waiters, code } => PhaseV1::Stopping {
                waiters: waiters.iter().map(|w| w.0).collect(),
                serving: None,
                cancelled: None,
                code: Some(*code),
            },
            Phase::Done { code } => PhaseV1::Done { code: *code },
        })
    }

    fn into_phase(self) -> Phase {
        match self {
            PhaseV1::Up { current, reload } => Phase::Up {
                current: current.into_current(),
                reload: reload.map(ReloadV1::into_reload),
            },
            PhaseV1::Stopping {
                waiters,
                serving,
                cancelled,
                code,
            } => Phase::Stopping {
                waiters: waiters.into_iter().map(ClientId).collect(),
                serving: serving.map(ChildId),
                cancelled: cancelled.map(ChildId),
                code,
            },
            PhaseV1::Done { code } => Phase::Done { code },
        }
    }
}

impl CurrentV1 {
    fn from_current(c: &Current) -> Result<CurrentV1, Unfit> {
        Ok(match c {
            Current::Child(child) => CurrentV1::Child(ChildV1::from_child(child)?),
            Current::Backoff { program, at } => CurrentV1::Backoff {
                program: ProgramRecordV1::from_record(program),
                at: *at,
            },
            Current::Exited {
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
            Current::Idle { program } => CurrentV1::Idle {
                program: ProgramRecordV1::from_record(program),
            },
        })
    }

    fn into_current(self) -> Current {
        match self {
            CurrentV1::Child(child) => Current::Child(child.into_child()),
            CurrentV1::Backoff { program, at } => Current::Backoff {
                program: program.into_record(),
                at,
            },
            CurrentV1::Exited {
                program,
                pid,
                exit,
                was_ready,
            } => Current::Exited {
                program: program.into_record(),
                pid,
                exit: exit.into_exit(),
                was_ready,
            },
            CurrentV1::Idle { program } => Current::Idle {
                program: program.into_record(),
            },
        }
    }
}

impl ReloadV1 {
    fn from_reload(r: &Reload) -> Result<ReloadV1, Unfit> {
        Ok(ReloadV1 {
            waiter: r.waiter.map(|w| w.0),
            since: r.since,
            incoming: match &r.incoming {
                Incoming::Preparing => IncomingV1::Preparing,
                Incoming::Child(child) => IncomingV1::Child(ChildV1::from_child(child)?),
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
            build: r.build,
            upgrade: r.upgrade,
            vetting: match &r.vetting {
                Some((program, listeners)) => Some((
                    ProgramRecordV1::from_record(program),
                    listeners_v1(listeners)?,
                )),
                None => None,
            },
        })
    }

    fn into_reload(self) -> Reload {
        Reload {
            waiter: self.waiter.map(ClientId),
            since: self.since,
            incoming: match self.incoming {
                IncomingV1::Preparing => Incoming::Preparing,
                IncomingV1::Child(child) => Incoming::Child(child.into_child()),
            },
            queued: self
                .queued
                .into_iter()
                .map(|a| Asked {
                    waiter: a.waiter.map(ClientId),
                    path: a.path,
                    args: a.args,
                    overrides: a.overrides,
                })
                .collect(),
            build: self.build,
            upgrade: self.upgrade,
            vetting: self
                .vetting
                .map(|(program, listeners)| (program.into_record(), listeners_from_v1(listeners))),
        }
    }
}

impl UpgradeV1 {
    fn from_upgrade(u: &Upgrade) -> UpgradeV1 {
        UpgradeV1 {
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
        }
    }

    fn into_upgrade(self) -> Upgrade {
        Upgrade {
            waiter: self.waiter.map(ClientId),
            program: self.program.into_record(),
            old_pid: self.old_pid,
            new_pid: self.new_pid,
            ms: self.ms,
            step: match self.step {
                UpgradeStepV1::Probing => UpgradeStep::Probing,
                UpgradeStepV1::Exec => UpgradeStep::Exec,
            },
            from: self.from,
        }
    }
}

impl ChildV1 {
    fn from_child(c: &Child) -> Result<ChildV1, Unfit> {
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
                Life::Started { by } => LifeV1::Started { by },
                Life::Settling { at } => LifeV1::Settling { at },
                Life::AwaitingReady { by } => LifeV1::AwaitingReady { by },
                Life::Ready => LifeV1::Ready,
                Life::Lameduck { kill_at, welcomed } => LifeV1::Lameduck { kill_at, welcomed },
                Life::Killed => LifeV1::Killed,
            },
            lameduck_ms: c.lameduck_ms,
            killed_because: c.killed_because.clone(),
            finished: c.finished.clone(),
        })
    }

    fn into_child(self) -> Child {
        Child {
            id: ChildId(self.id),
            pid: self.pid,
            program: self.program.into_record(),
            argv: self.argv,
            listeners: listeners_from_v1(self.listeners),
            started: self.started,
            started_at: self.started_at,
            life: match self.life {
                LifeV1::Spawning => Life::Spawning,
                LifeV1::Started { by } => Life::Started { by },
                LifeV1::Settling { at } => Life::Settling { at },
                LifeV1::AwaitingReady { by } => Life::AwaitingReady { by },
                LifeV1::Ready => Life::Ready,
                LifeV1::Lameduck { kill_at, welcomed } => Life::Lameduck { kill_at, welcomed },
                LifeV1::Killed => Life::Killed,
            },
            lameduck_ms: self.lameduck_ms,
            killed_because: self.killed_because,
            finished: self.finished,
        }
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
    let layout = StateV1::from_state(state).expect("the state fits version 1");
    let bytes = postcard::to_stdvec(&layout).expect("the state serializes");
    let read: StateV1 = postcard::from_bytes(&bytes).expect("and reads back");
    read.into_state()
}
