//! The supervisor's loop: it turns sockets, signals, exits and timers into
//! [`Input`]s for the [`Machine`], and carries out the [`Effect`]s it returns. It
//! decides nothing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::{Duration, SystemTime};

use rustix::process::{Pid, Signal as OsSignal};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::channel;
use crate::config::Config;
use crate::control::protocol::{self, ListenerInfo, Response, SupervisorMsg, Versions};
use crate::control::server::{self, Incoming};
use crate::environ::{self, TEST_MOVE_CAP_ENV, TEST_TAKE_MS_ENV};
use crate::logger::Level;
use crate::socket;

use super::child_io::{self, ChildIo, Outgoing, Parcels, Parked};
use super::fds::FdTable;
use super::handover::{self, FdKind, Handover, HeldChild, HeldClient, HeldFd};
use super::machine::{ChildId, ClientId, Effect, Input, Machine, Notice, Settings, Signal, Time};
use super::notify::{self, Notify};
use super::prepare::{self, Failure, Opened};
use super::setup::{Setup, SocketFile};
use super::state::{ListenerRecord, ProgramRecord};
use super::{descendants, reap, spawn, upgrade, user, watch_build};

/// What the shell knows of a child the machine started: where to send, whom to kill.
#[derive(Debug)]
struct Handle {
    pid: u32,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// The protocol version of its hello (0 until then).
    version: Arc<AtomicU16>,
    /// Its fds, while its task has handed them back (an exec is being readied).
    parked: Option<Parked>,
}

/// A client that waits on a connection the shell holds itself (an upgrade's, which
/// may be answered by the supervisor's next image).
#[derive(Debug)]
struct Held {
    version: u16,
    stream: std::os::unix::net::UnixStream,
}

/// A reload's [`prepare::open`], done.
#[derive(Debug)]
struct Prepared {
    result: Result<Opened, Failure>,
    path: PathBuf,
    args: Vec<OsString>,
    listeners: Vec<ListenerRecord>,
}

/// The supervisor's loop and everything it holds.
pub(crate) struct Shell {
    config: Config,
    machine: Machine,
    fds: FdTable,
    children: HashMap<ChildId, Handle>,
    clients: HashMap<ClientId, oneshot::Sender<Response>>,
    inputs_tx: mpsc::UnboundedSender<Input>,
    inputs: mpsc::UnboundedReceiver<Input>,
    prepared_tx: mpsc::UnboundedSender<Prepared>,
    prepared: mpsc::UnboundedReceiver<Prepared>,
    requests_tx: mpsc::Sender<Incoming>,
    requests: mpsc::Receiver<Incoming>,
    connections: server::Connections,
    /// The control socket (the server has a copy of its own), kept for an upgrade.
    control: OwnedFd,
    server: tokio::task::JoinHandle<()>,
    /// The number of the next control connection.
    next_client: u64,
    held: HashMap<ClientId, Held>,
    /// The executables clients passed as fds with their reloads, until prepared.
    exes: HashMap<ClientId, OwnedFd>,
    socket: SocketFile,
    /// The flock on `<name>.lock`, held for the supervisor's whole life.
    lock: OwnedFd,
    run_as: Option<user::RunAs>,
    notify: Option<Notify>,
    /// The answers to `stop`, held until what is left of the service has been ended
    /// (their exit code says whether it could be).
    stopped: Vec<(oneshot::Sender<Response>, i32)>,
    /// The machine's time 0, less `offset` (the time the previous image had reached).
    clock: Instant,
    offset: Time,
    dev: bool,
    /// The supervisor's own command line.
    args: Vec<OsString>,
    /// An [`Effect::Exec`] to carry out once the loop is back at the top.
    exec: Option<ProgramRecord>,
    /// The fds of connections handed over, until forwarded or returned.
    parcels: Parcels,
    /// Dev mode: the watch for new builds.
    build_watch: Option<watch_build::BuildWatch>,
}

impl Shell {
    /// Starts serving the control socket (and in dev mode, watching for new builds);
    /// the first child starts with the loop.
    pub(crate) fn new(
        config: Config,
        setup: Setup,
        dev: bool,
        args: Vec<OsString>,
    ) -> Result<Shell, String> {
        let settings = settings(&config, dev);
        let program = setup.program.clone();
        let machine = Machine::new(
            settings,
            std::process::id(),
            SystemTime::now(),
            setup.listeners,
            setup.program,
            0,
        );
        let control = OwnedFd::from(setup.control);
        let mut shell = Shell::assemble(Parts {
            config,
            machine,
            fds: setup.fds,
            control,
            socket: setup.socket,
            lock: setup.lock,
            run_as: setup.run_as,
            offset: 0,
            next_client: 1,
            dev,
            args,
        })?;
        shell.watch_builds(&program);
        Ok(shell)
    }

    /// The supervisor of a previous image, taken over after an upgrade's exec: the
    /// same state, fds and children. Its first input is [`Input::Resumed`].
    pub(crate) fn resume(
        config: Config,
        handover: Handover,
        mut fds: handover::Fds,
        run_as: Option<user::RunAs>,
    ) -> Result<Shell, String> {
        let missing = |what: &str| format!("the handover's {what} is missing");
        let mut table = FdTable::default();
        for held in handover.fds {
            let fd = fds
                .take(held.fd, FdKind::SocketOrFile)
                .ok_or_else(|| missing("fd"))?;
            table.restore(held.key, fd, held.file);
        }
        let control = fds
            .take(handover.control, FdKind::Socket)
            .ok_or_else(|| missing("control socket"))?;
        let lock = fds
            .take(handover.lock, FdKind::File)
            .ok_or_else(|| missing("lock"))?;
        let settings = settings(&config, handover.dev);
        let program = handover.state.phase_program();
        let machine = Machine::resume(settings, handover.state);
        let mut shell = Shell::assemble(Parts {
            config,
            machine,
            fds: table,
            control,
            socket: SocketFile::at(handover.socket),
            lock,
            run_as,
            offset: handover.now,
            next_client: handover.next_client,
            dev: handover.dev,
            args: handover.args,
        })?;
        for child in handover.children {
            let Some(channel) = fds.take(child.channel, FdKind::Socket) else {
                continue;
            };
            let pidfd = child.pidfd.and_then(|fd| fds.take(fd, FdKind::Pidfd));
            let version = Arc::new(AtomicU16::new(child.version.unwrap_or(0)));
            shell.start_task(child.id, child.pid, Parked { channel, pidfd }, version);
        }
        for client in handover.clients {
            if let Some(fd) = fds.take(client.fd, FdKind::Socket) {
                let stream = std::os::unix::net::UnixStream::from(fd);
                let version = client.version;
                shell.held.insert(client.id, Held { version, stream });
            }
        }
        if let Some(program) = program {
            shell.watch_builds(&program);
        }
        shell.handle(Input::Resumed);
        Ok(shell)
    }

    fn assemble(parts: Parts) -> Result<Shell, String> {
        let (requests_tx, requests) = mpsc::channel(16);
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        let (prepared_tx, prepared) = mpsc::unbounded_channel();
        let connections = server::Connections::new();
        let mut shell = Shell {
            config: parts.config,
            machine: parts.machine,
            fds: parts.fds,
            children: HashMap::new(),
            clients: HashMap::new(),
            inputs_tx,
            inputs,
            prepared_tx,
            prepared,
            requests_tx,
            requests,
            connections,
            control: parts.control,
            server: tokio::spawn(async {}),
            next_client: parts.next_client,
            held: HashMap::new(),
            exes: HashMap::new(),
            socket: parts.socket,
            lock: parts.lock,
            run_as: parts.run_as,
            notify: None,
            stopped: Vec::new(),
            clock: Instant::now(),
            offset: parts.offset,
            dev: parts.dev,
            args: parts.args,
            exec: None,
            parcels: Parcels::default(),
            build_watch: None,
        };
        shell.serve()?;
        if let Err(e) = descendants::become_subreaper() {
            shell.log(Level::Warn, &e);
        }
        match Notify::from_env() {
            Some(Ok(notify)) => shell.notify = Some(notify),
            Some(Err(e)) => shell.log(Level::Warn, &e),
            None => {}
        }
        Ok(shell)
    }

    /// Serves the control socket (again, after an exec that did not happen).
    fn serve(&mut self) -> Result<(), String> {
        let copy = rustix::io::fcntl_dupfd_cloexec(&self.control, 0)
            .map_err(|e| format!("control socket: {e}"))?;
        let std = std::os::unix::net::UnixListener::from(copy);
        std.set_nonblocking(true)
            .map_err(|e| format!("control socket: {e}"))?;
        let listener =
            tokio::net::UnixListener::from_std(std).map_err(|e| format!("control socket: {e}"))?;
        self.server = tokio::spawn(server::serve(
            listener,
            self.requests_tx.clone(),
            self.config.name.clone(),
            self.config.logger.clone(),
            self.connections.clone(),
            self.next_client,
        ));
        Ok(())
    }

    /// Dev mode: watches for new builds of the program that runs now, as the file it
    /// is (a build that landed since it started is new).
    fn watch_builds(&mut self, program: &ProgramRecord) {
        if !self.dev {
            return;
        }
        let running = self
            .fds
            .get(program.exe)
            .and_then(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0).ok())
            .and_then(|fd| std::fs::File::from(fd).metadata().ok());
        let logger = self.config.logger.clone();
        let name = self.config.name.clone();
        let log = move |level: Level, text: &str| logger.log(level, &name, text);
        self.build_watch =
            watch_build::spawn(program.path.clone(), running, self.inputs_tx.clone(), log);
    }

    /// The loop: returns the supervisor's exit code.
    pub(crate) async fn run(mut self) -> i32 {
        let signals = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        );
        // A supervisor that an upgrade started has them blocked (pending ones wait):
        // now that the handlers are in place, they are delivered.
        crate::signals::block(false);
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = signals else {
            self.log(Level::Warn, "cannot install signal handlers; stopping");
            return 1;
        };
        // As a subreaper (and as PID 1), orphans are reparented to us: reap them on
        // SIGCHLD.
        let mut orphans = signal(SignalKind::child()).ok();
        loop {
            self.carry_out();
            if let Some(program) = self.exec.take() {
                self.exec(program, [&mut term, &mut int, &mut hup]).await;
                continue;
            }
            if let Some(code) = self.machine.done() {
                let code = self.end_descendants(code).await;
                // Let the answers to `stop` reach their clients before the process exits.
                self.connections.drain(Duration::from_secs(1)).await;
                return code;
            }
            let deadline = self
                .machine
                .next_deadline()
                .and_then(|t| self.clock.checked_add(Duration::from_millis(t)));
            tokio::select! {
                Some(input) = self.inputs.recv() => self.handle(input),
                Some(prepared) = self.prepared.recv() => self.prepared(prepared),
                Some(incoming) = self.requests.recv() => self.incoming(incoming),
                _ = term.recv() => self.handle(Input::Signal(Signal::Term)),
                _ = int.recv() => self.handle(Input::Signal(Signal::Int)),
                _ = hup.recv() => self.handle(Input::Signal(Signal::Hup)),
                () = sleep_until(deadline) => {
                    let now = self.now();
                    self.machine.handle_timeout(now);
                }
                Some(()) = recv_signal(orphans.as_mut()) => {
                    let ours: Vec<u32> = self.children.values().map(|h| h.pid).collect();
                    reap::reap_orphans(&ours);
                }
            }
        }
    }

    fn now(&self) -> Time {
        let elapsed = u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.offset.saturating_add(elapsed)
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        self.machine.handle(input, now);
    }

    fn incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Request {
                client,
                request,
                reply,
                exe,
            } => {
                self.next_client = self.next_client.max(client + 1);
                let client = ClientId(client);
                if let Some(exe) = exe {
                    self.exes.insert(client, exe);
                }
                self.clients.insert(client, reply);
                self.handle(Input::Request { client, request });
            }
            Incoming::Gone { client } => {
                let client = ClientId(client);
                self.clients.remove(&client);
                self.exes.remove(&client);
                self.handle(Input::ClientGone { client });
            }
            Incoming::Upgrade {
                client,
                request,
                version,
                stream,
                exe,
            } => {
                self.next_client = self.next_client.max(client + 1);
                let client = ClientId(client);
                if let Some(exe) = exe {
                    self.exes.insert(client, exe);
                }
                self.held.insert(client, Held { version, stream });
                self.handle(Input::Request {
                    client,
                    request: crate::control::protocol::Request::Upgrade(request),
                });
            }
        }
    }

    /// A reload's binary is open and its listeners bound: they join the fd table.
    fn prepared(&mut self, prepared: Prepared) {
        let opened = match prepared.result {
            Ok(opened) => opened,
            Err((reason, counts)) => return self.handle(Input::PrepareFailed { reason, counts }),
        };
        let mut listeners = prepared.listeners;
        for (index, bound) in opened.rebound {
            if let Some(record) = listeners.get_mut(index) {
                record.bound = bound.map(|b| (b.addr, self.fds.insert_with_file(b.fd, b.file)));
            }
        }
        let program = ProgramRecord {
            path: prepared.path,
            args: prepared.args,
            exe: self.fds.insert(opened.exe),
        };
        self.handle(Input::Prepared { program, listeners });
    }

    /// Carries out every effect the machine has for us, then closes the fds that
    /// nothing refers to any more.
    fn carry_out(&mut self) {
        while let Some(effect) = self.machine.poll_effect() {
            self.effect(effect);
        }
        let keep = self.machine.fd_keys();
        self.fds.retain(&keep);
    }

    fn effect(&mut self, effect: Effect) {
        match effect {
            Effect::Spawn {
                child,
                program,
                argv,
            } => self.spawn(child, &program, &argv),
            Effect::Welcome { child, listeners } => self.welcome(child, &listeners),
            Effect::Send { child, msg } => self.send(child, msg, Vec::new()),
            Effect::Forward { from, to, parcels } => {
                let mut fds = Vec::new();
                let mut forwarded = Vec::new();
                for (theirs, parcel) in parcels {
                    if let Some(fd) = child_io::take_parcel(&self.parcels, from, theirs) {
                        fds.push(fd);
                        forwarded.push(parcel);
                    }
                }
                self.send(to, SupervisorMsg::Adopt(forwarded), fds);
            }
            Effect::Return { child, ids } => {
                for id in &ids {
                    drop(child_io::take_parcel(&self.parcels, child, *id));
                }
                self.send(child, SupervisorMsg::Returned(ids), Vec::new());
            }
            Effect::Kill { child } => {
                if let Some(handle) = self.children.get(&child) {
                    kill(handle.pid);
                }
            }
            Effect::Probe { program } => self.probe(&program),
            Effect::Exec { program } => self.exec = Some(program),
            Effect::Reap { child } => {
                child_io::drop_parcels(&self.parcels, child);
                if let Some(handle) = self.children.remove(&child) {
                    child_io::reap(handle.pid);
                }
            }
            Effect::Prepare {
                client,
                path,
                args,
                listeners,
                overrides,
            } => {
                let done = self.prepared_tx.clone();
                let unix_mode = self.config.unix_mode;
                let exe = client.and_then(|c| self.exes.remove(&c));
                tokio::spawn(async move {
                    let result =
                        prepare::open(path.clone(), exe, listeners.clone(), overrides, unix_mode)
                            .await;
                    let _ = done.send(Prepared {
                        result,
                        path,
                        args,
                        listeners,
                    });
                });
            }
            Effect::Answer { client, response } => {
                self.exes.remove(&client);
                if let Some(reply) = self.clients.remove(&client) {
                    match response {
                        Response::Stopped { code } => self.stopped.push((reply, code)),
                        response => {
                            let _ = reply.send(response);
                        }
                    }
                } else if let Some(held) = self.held.remove(&client) {
                    answer_held(held, response);
                }
            }
            Effect::Notify(notice) => {
                let text = match notice {
                    Notice::Ready(status) => format!("READY=1\nSTATUS={status}"),
                    Notice::Reloading => notify::reloading("reloading"),
                    Notice::Stopping => "STOPPING=1\nSTATUS=stopping".to_string(),
                };
                if let Some(Err(e)) = self.notify.as_ref().map(|n| n.send(&text)) {
                    self.log(Level::Warn, &e);
                }
            }
            Effect::Log(level, text) => self.log(level, &text),
            Effect::WatchBuildAgain => {
                if let Some(watch) = &self.build_watch {
                    watch.look_again();
                }
            }
            Effect::Close => {
                self.socket.remove();
                self.fds.clear();
            }
        }
    }

    fn spawn(&mut self, child: ChildId, program: &ProgramRecord, argv: &[OsString]) {
        let spawned = match self.fds.get(program.exe) {
            Some(exe) => {
                spawn::spawn(exe, &program.path, argv, self.run_as.as_ref()).map_err(|e| {
                    let reason = format!(
                        "cannot start {}: {}",
                        program.path.display(),
                        socket::describe(&e)
                    );
                    (reason, e.raw_os_error() == Some(libc::ETXTBSY))
                })
            }
            None => Err((
                format!("cannot start {}: its fd is gone", program.path.display()),
                false,
            )),
        };
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err((reason, busy)) => {
                return self.handle(Input::SpawnFailed {
                    child,
                    reason,
                    busy,
                });
            }
        };
        self.start_task(
            child,
            spawned.pid,
            Parked {
                channel: spawned.channel,
                pidfd: spawned.pidfd,
            },
            Arc::new(AtomicU16::new(0)),
        );
        self.handle(Input::Spawned {
            child,
            pid: spawned.pid,
            started: SystemTime::now(),
        });
    }

    /// The listeners for a hello: names and addresses, and a copy of each fd that is on.
    fn welcome(&mut self, child: ChildId, listeners: &[ListenerRecord]) {
        let mut infos = Vec::with_capacity(listeners.len());
        let mut fds = Vec::new();
        for record in listeners {
            let dup = record.bound.as_ref().and_then(|(addr, key)| {
                let fd = self.fds.get(*key)?;
                let fd = rustix::io::fcntl_dupfd_cloexec(fd, 0).ok()?;
                Some((addr.to_string(), fd))
            });
            // A listener whose fd cannot be copied is off for this child.
            let addr = dup.map(|(addr, fd)| {
                fds.push(fd);
                addr
            });
            infos.push(ListenerInfo {
                name: record.name.clone(),
                network: record.network,
                addr,
            });
        }
        self.send(child, SupervisorMsg::Welcome { listeners: infos }, fds);
    }

    fn send(&self, child: ChildId, msg: SupervisorMsg, fds: Vec<OwnedFd>) {
        let Some(handle) = self.children.get(&child) else {
            return;
        };
        match &handle.parked {
            None => {
                let _ = handle.outgoing.send(Outgoing::Message(msg, fds));
            }
            // Its task has handed the channel back: send from here (a short message
            // that does not wait; a child that does not read loses it, and its exit or
            // its deadline is what counts).
            Some(parked) => {
                let Some(bytes) = msg.encode_for(child_io::spoken(&handle.version)) else {
                    return;
                };
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
                let _ = channel::send(parked.channel.as_fd(), &bytes, &borrowed);
            }
        }
    }

    /// Starts the task that moves a child's messages and reports its exit; `version`
    /// is the version of its hello (0 until it says hello), shared with the task.
    fn start_task(&mut self, child: ChildId, pid: u32, parked: Parked, version: Arc<AtomicU16>) {
        let (outgoing_tx, outgoing) = mpsc::unbounded_channel();
        self.children.insert(
            child,
            Handle {
                pid,
                outgoing: outgoing_tx,
                version: Arc::clone(&version),
                parked: None,
            },
        );
        tokio::spawn(
            ChildIo {
                id: child,
                pid,
                pidfd: parked.pidfd,
                channel: parked.channel,
                outgoing,
                inputs: self.inputs_tx.clone(),
                version,
                parcels: Arc::clone(&self.parcels),
            }
            .run(),
        );
    }

    /// The handover as it would be now (the probe reads it; an exec passes it on).
    fn handover(&self) -> Handover {
        let fds = self
            .fds
            .entries()
            .map(|(key, fd, file)| HeldFd {
                key,
                fd: handover::raw(&fd),
                file: file.cloned(),
            })
            .collect();
        let children = self
            .children
            .iter()
            .map(|(id, handle)| {
                let parked = handle.parked.as_ref();
                HeldChild {
                    id: *id,
                    pid: handle.pid,
                    channel: parked.map_or(-1, |p| handover::raw(&p.channel)),
                    pidfd: parked.and_then(|p| p.pidfd.as_ref().map(handover::raw)),
                    version: child_io::spoken(&handle.version),
                }
            })
            .collect();
        let clients = self
            .held
            .iter()
            .map(|(id, held)| HeldClient {
                id: *id,
                fd: handover::raw(&held.stream),
                version: held.version,
            })
            .collect();
        Handover {
            versions: Versions::ours(),
            now: self.now(),
            dev: self.dev,
            state: self.machine.state().clone(),
            fds,
            children,
            control: handover::raw(&self.control),
            socket: self.socket.path().unwrap_or_default(),
            lock: handover::raw(&self.lock),
            clients,
            next_client: self.next_client,
            args: self.args.clone(),
        }
    }

    /// Asks the upgrade's binary, off the loop, whether it can take over.
    fn probe(&mut self, program: &ProgramRecord) {
        let blob = self.handover().encode();
        let exe = self
            .fds
            .get(program.exe)
            .and_then(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0).ok());
        let inputs = self.inputs_tx.clone();
        tokio::spawn(async move {
            let result = match (blob, exe) {
                (Ok(blob), Some(exe)) => {
                    tokio::task::spawn_blocking(move || upgrade::probe(exe.as_fd(), &blob))
                        .await
                        .unwrap_or_else(|e| Err(format!("the probe failed: {e}")))
                }
                (Err(e), _) => Err(e),
                (_, None) => Err("its fd is gone".to_string()),
            };
            let _ = inputs.send(Input::Probed { result });
        });
    }

    /// Re-executes the supervisor as `program`, handing everything over; returns only
    /// if that did not happen (and then the supervisor goes on as it was).
    async fn exec(
        &mut self,
        program: ProgramRecord,
        signals: [&mut tokio::signal::unix::Signal; 3],
    ) {
        crate::signals::block(true);
        // A signal that arrived before the block is handled here, not lost in the exec.
        let [term, int, hup] = signals;
        let pending = tokio::select! {
            biased;
            _ = term.recv() => Some(Signal::Term),
            _ = int.recv() => Some(Signal::Int),
            _ = hup.recv() => Some(Signal::Hup),
            () = std::future::ready(()) => None,
        };
        if let Some(signal) = pending {
            return self.exec_failed(format!("{signal:?} arrived"), Some(signal));
        }
        // Each child's task hands its fds back after what it was asked to send; what
        // it received is in the inputs by then.
        let mut waits = Vec::new();
        for (id, handle) in &self.children {
            let (tx, rx) = oneshot::channel();
            if handle.outgoing.send(Outgoing::Handback(tx)).is_ok() {
                waits.push((*id, rx));
            }
        }
        for (id, rx) in waits {
            if let Ok(Ok(parked)) = tokio::time::timeout(Duration::from_secs(2), rx).await {
                if let Some(handle) = self.children.get_mut(&id) {
                    handle.parked = Some(parked);
                }
            }
        }
        self.server.abort();
        let _ = (&mut self.server).await;
        // Let the requests already accepted be answered (a stop cancels the upgrade).
        self.connections.drain(Duration::from_millis(200)).await;
        while let Ok(input) = self.inputs.try_recv() {
            self.handle(input);
        }
        while let Ok(incoming) = self.requests.try_recv() {
            self.incoming(incoming);
        }
        self.carry_out();
        let unparked = self.children.values().any(|h| h.parked.is_none());
        if !self.machine.exec_wanted() || unparked {
            let why = if unparked {
                "a child's task did not hand its channel back".to_string()
            } else {
                "cancelled".to_string()
            };
            return self.exec_failed(why, None);
        }
        let handover = self.handover();
        let result = handover
            .encode()
            .and_then(|blob| handover::in_memory(&blob).map_err(|e| e.to_string()));
        let file = match result {
            Ok(file) => file,
            Err(e) => return self.exec_failed(e, None),
        };
        let raws = handover.raw_fds();
        let mut inherit: Vec<BorrowedFd<'_>> = raws
            .iter()
            .map(|raw| {
                // SAFETY: each number is an fd this process holds open (the table, the
                // parked children, the held clients, the control socket and the lock)
                // for as long as these borrows live: nothing is closed until the exec
                // or its failure.
                unsafe { BorrowedFd::borrow_raw(*raw) }
            })
            .collect();
        inherit.push(file.as_fd());
        let reason = match (
            self.fds.get(program.exe),
            handover::set_cloexec(&inherit, false),
        ) {
            (Some(exe), Ok(())) => {
                self.log(
                    Level::Info,
                    &format!("re-executing as {}", program.path.display()),
                );
                upgrade::exec(exe, &self.args, file.as_fd())
            }
            (None, _) => "its fd is gone".to_string(),
            (_, Err(e)) => e.to_string(),
        };
        let _ = handover::set_cloexec(&inherit, true);
        drop(file);
        self.exec_failed(reason, None);
    }

    /// The exec did not happen: the children's tasks and the control server run again,
    /// signals are delivered again, and the machine is told.
    fn exec_failed(&mut self, reason: String, signal: Option<Signal>) {
        let parked: Vec<(ChildId, u32, Parked, Arc<AtomicU16>)> = self
            .children
            .iter_mut()
            .filter_map(|(id, h)| {
                let parked = h.parked.take()?;
                Some((*id, h.pid, parked, Arc::clone(&h.version)))
            })
            .collect();
        for (id, pid, parked, version) in parked {
            self.start_task(id, pid, parked, version);
        }
        if self.server.is_finished() {
            if let Err(e) = self.serve() {
                self.log(Level::Warn, &e);
            }
        }
        crate::signals::block(false);
        self.handle(Input::ExecFailed { reason });
        if let Some(signal) = signal {
            self.handle(Input::Signal(signal));
        }
    }

    /// The children are gone: ends what is left of the service, then answers `stop`.
    /// Returns the exit code, made non-zero if a process could not be ended.
    async fn end_descendants(&mut self, code: i32) -> i32 {
        let logger = self.config.logger.clone();
        let name = self.config.name.clone();
        let log = |text: &str| logger.log(Level::Info, &name, text);
        let ended = descendants::end_all(self.config.lameduck, log).await;
        let failed = ended.is_err();
        if let Err(e) = &ended {
            self.log(Level::Warn, e);
        }
        let code = if failed && code == 0 { 1 } else { code };
        for (reply, theirs) in self.stopped.drain(..) {
            let theirs = if failed && theirs == 0 { 1 } else { theirs };
            let _ = reply.send(Response::Stopped { code: theirs });
        }
        code
    }

    fn log(&self, level: Level, text: &str) {
        self.config.logger.log(level, &self.config.name, text);
    }
}

/// SIGKILL to the child's process group (its pid, as it was started with
/// `process_group(0)`), and to the child itself in case it left the group. It is not
/// reaped yet, so the pid is still its own.
fn kill(pid: u32) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, OsSignal::KILL);
        let _ = rustix::process::kill_process(pid, OsSignal::KILL);
    }
}

/// What the shell is assembled from, fresh or after an exec.
struct Parts {
    config: Config,
    machine: Machine,
    fds: FdTable,
    control: OwnedFd,
    socket: SocketFile,
    lock: OwnedFd,
    run_as: Option<user::RunAs>,
    offset: Time,
    next_client: u64,
    dev: bool,
    args: Vec<OsString>,
}

fn settings(config: &Config, dev: bool) -> Settings {
    Settings {
        name: config.name.clone(),
        persist: config.persist,
        fallback: config.fallback,
        lameduck_ms: millis(config.lameduck),
        hello_timeout_ms: millis(config.ready_timeout),
        dev,
        versions: Versions::ours(),
        move_cap: environ::test_number(TEST_MOVE_CAP_ENV).unwrap_or(MOVE_CAP),
        take_ms: environ::test_number(TEST_TAKE_MS_ENV).unwrap_or(TAKE_MS),
    }
}

/// The most connections on their way to the serving child at once.
const MOVE_CAP: usize = 1024;
/// How long the serving child has to take a connection forwarded to it.
const TAKE_MS: u64 = 1000;

/// Answers a client whose connection the shell holds, off the loop.
fn answer_held(held: Held, response: Response) {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut stream = held.stream;
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let bytes = protocol::frame(&protocol::encode_response(held.version, &response));
        let _ = stream.write_all(&bytes);
    });
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sleeps until `deadline`, or forever if there is none (for a `select!` branch).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn recv_signal(signal: Option<&mut tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}
