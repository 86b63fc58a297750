//! The supervisor's loop: it turns sockets, signals, exits and timers into
//! [`Input`]s for the [`Machine`], and carries out the [`Effect`]s it returns. It
//! decides nothing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;
use crate::control::protocol::{Response, Versions};
use crate::control::server::{self, ClientEvent};
use crate::environ::{self, TEST_MOVE_CAP_ENV, TEST_TAKE_MS_ENV};
use crate::logger::Level;

use super::child_io::Parked;
use super::fds::FdTable;
use super::handover::{self, FdKind, Handover};
use super::machine::{
    ChildId, ClientId, Effect, Input, Machine, Notice, Settings, Signal, StateReader, Time,
};
use super::notify::{self, Notify};
use super::parcels::Parcels;
use super::prepare::{self, Opened, PrepareError};
use super::setup::{Setup, SocketFile};
use super::state::{ListenerRecord, ProgramRecord};
use super::{descendants, reap, user, watch_build};

mod children;
mod clients;
mod upgrade_self;

use children::Handle;
use clients::Held;

/// A reload's [`prepare::open`], done.
#[derive(Debug)]
struct Prepared {
    result: Result<Opened, PrepareError>,
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
    clients: HashMap<ClientId, mpsc::UnboundedSender<Response>>,
    inputs_tx: mpsc::UnboundedSender<Input>,
    inputs: mpsc::UnboundedReceiver<Input>,
    prepared_tx: mpsc::UnboundedSender<Prepared>,
    prepared: mpsc::UnboundedReceiver<Prepared>,
    requests_tx: mpsc::Sender<ClientEvent>,
    requests: mpsc::Receiver<ClientEvent>,
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
    /// The machine's time 0, less `offset` (the time the previous image had reached).
    clock: Instant,
    offset: Time,
    dev: bool,
    /// The supervisor's own command line.
    args: Vec<OsString>,
    /// An [`Effect::Exec`] to carry out once the loop is back at the top: the binary,
    /// and the state version to write.
    exec: Option<(ProgramRecord, u16)>,
    /// The fds of connections handed over, until forwarded or returned.
    parcels: Arc<Parcels>,
    /// Dev mode: the watch for new builds.
    build_watch: Option<watch_build::BuildWatch>,
    /// Readings of the state asked for from outside the loop (scrapes).
    readers: mpsc::Receiver<StateReader>,
    /// The server of the metrics' listener.
    #[cfg(feature = "metrics")]
    scrape: crate::supervisor::scrape::ScrapeServer,
    /// The journal's event of the reload whose span the log's lines carry.
    #[cfg(feature = "tracing")]
    reload_span: Option<u64>,
}

impl Shell {
    /// Starts serving the control socket (and in dev mode, watching for new builds);
    /// the first child starts with the loop.
    pub(crate) fn new(
        config: Config,
        setup: Setup,
        dev: bool,
        args: Vec<OsString>,
    ) -> Result<Shell, ShellError> {
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
    ) -> Result<Shell, ShellError> {
        let missing = ShellError::Missing;
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
        let machine = Machine::resume(settings, handover.state, handover.moves);
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

    fn assemble(parts: Parts) -> Result<Shell, ShellError> {
        let (requests_tx, requests) = mpsc::channel(16);
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        let (prepared_tx, prepared) = mpsc::unbounded_channel();
        let connections = server::Connections::new();
        let (readers_tx, readers) = mpsc::channel(16);
        #[cfg(feature = "metrics")]
        let scrape = crate::supervisor::scrape::ScrapeServer::new(readers_tx);
        // Nothing else reads the state from outside the loop.
        #[cfg(not(feature = "metrics"))]
        drop(readers_tx);
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
            clock: Instant::now(),
            offset: parts.offset,
            dev: parts.dev,
            args: parts.args,
            exec: None,
            parcels: Arc::default(),
            build_watch: None,
            #[cfg(feature = "metrics")]
            scrape,
            readers,
            #[cfg(feature = "tracing")]
            reload_span: None,
        };
        shell.serve()?;
        if let Err(e) = descendants::become_subreaper() {
            shell.log(Level::Warn, &e.to_string());
        }
        match Notify::from_env() {
            Some(Ok(notify)) => shell.notify = Some(notify),
            Some(Err(e)) => shell.log(Level::Warn, &e.to_string()),
            None => {}
        }
        Ok(shell)
    }

    /// Serves the control socket (again, after an exec that did not happen).
    fn serve(&mut self) -> Result<(), ShellError> {
        let copy = rustix::io::fcntl_dupfd_cloexec(&self.control, 0)
            .map_err(|e| ShellError::ControlSocket(e.into()))?;
        let std = std::os::unix::net::UnixListener::from(copy);
        std.set_nonblocking(true)
            .map_err(ShellError::ControlSocket)?;
        let listener =
            tokio::net::UnixListener::from_std(std).map_err(ShellError::ControlSocket)?;
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
            if let Some((program, state_version)) = self.exec.take() {
                (self.exec(program, state_version, [&mut term, &mut int, &mut hup])).await;
                continue;
            }
            if let Some(code) = self.machine.done() {
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
                Some(read) = self.readers.recv() => read(self.machine.state()),
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

    /// A reload's binary is open and its listeners bound: they join the fd table.
    fn prepared(&mut self, prepared: Prepared) {
        let opened = match prepared.result {
            Ok(opened) => opened,
            Err(e) => {
                let (reason, counts) = (e.to_string(), e.counts());
                return self.handle(Input::PrepareFailed { reason, counts });
            }
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
        self.parcels.pause(self.machine.paused_senders());
        self.follow_metrics();
        self.follow_reload_span();
    }

    /// With the `tracing` feature: a span per reload (`littleboss.reload`, with the
    /// number of its event in the journal), which the lines said during it carry.
    #[cfg(feature = "tracing")]
    fn follow_reload_span(&mut self) {
        let under_way = self.machine.state().journal.under_way;
        if under_way == self.reload_span {
            return;
        }
        self.reload_span = under_way;
        let span = under_way
            .map(|seq| tracing::info_span!(target: "littleboss", "littleboss.reload", seq));
        self.config.logger.within(span);
    }

    #[cfg(not(feature = "tracing"))]
    fn follow_reload_span(&mut self) {}

    /// Serves the metrics' listener as the state has it now (a reload may move it).
    #[cfg(feature = "metrics")]
    fn follow_metrics(&mut self) {
        let Some(name) = self.config.metrics.clone() else {
            return;
        };
        let state = self.machine.state();
        let record = state.listeners.iter().find(|l| l.name == name);
        if let Err(e) = self.scrape.follow(record, &self.fds) {
            self.log(Level::Warn, &e);
        }
    }

    #[cfg(not(feature = "metrics"))]
    fn follow_metrics(&mut self) {}

    /// The answer to `--littleboss=metrics`: the Prometheus text format.
    #[cfg(feature = "metrics")]
    fn metrics_response(&self) -> Response {
        use crate::supervisor::metrics::{Format, render};
        let text = render(
            self.machine.state(),
            Format::Prometheus,
            self.scrape.refused(),
        );
        Response::Metrics { text }
    }

    /// The answer to `--littleboss=metrics` from a build without the feature.
    #[cfg(not(feature = "metrics"))]
    fn metrics_response(&self) -> Response {
        Response::Refused {
            reason: crate::config::NO_METRICS.to_string(),
        }
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
            Effect::Forward { from, to, parcels } => self.forward(from, to, parcels),
            Effect::RelayState { from, to, msg } => self.relay_state(from, to, msg),
            Effect::DropState { from } => self.drop_state(from),
            Effect::MeasureRoom { child } => self.measure_room(child),
            Effect::Return { child, ids } => self.give_back(child, ids),
            Effect::Kill { child } => self.kill_child(child),
            Effect::Probe { program } => self.probe(&program),
            Effect::Exec {
                program,
                state_version,
            } => self.exec = Some((program, state_version)),
            Effect::Reap { child } => self.reap(child),
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
            Effect::Answer { client, response } => self.answer(client, response),
            Effect::Metrics { client } => {
                let response = self.metrics_response();
                self.answer(client, response);
            }
            Effect::Interim { client, response } => self.interim(client, response),
            Effect::Notify(notice) => {
                let text = match notice {
                    Notice::Ready(status) => format!("READY=1\nSTATUS={status}"),
                    Notice::Reloading => notify::reloading("reloading"),
                    Notice::Stopping => "STOPPING=1\nSTATUS=stopping".to_string(),
                    Notice::Extend { ms } => notify::extend(ms),
                };
                if let Some(Err(e)) = self.notify.as_ref().map(|n| n.send(&text)) {
                    self.log(Level::Warn, &e.to_string());
                }
            }
            Effect::Log(level, text) => self.log(level, &text),
            Effect::WatchBuildAgain => {
                if let Some(watch) = &self.build_watch {
                    watch.look_again();
                }
            }
            Effect::EndDescendants => self.end_descendants(),
            Effect::Close => {
                self.socket.remove();
                self.fds.clear();
            }
        }
    }

    /// Ends what the service left behind, off the loop, and says when it is done.
    fn end_descendants(&mut self) {
        let logger = self.config.logger.clone();
        let name = self.config.name.clone();
        let grace = self.config.lameduck;
        let inputs = self.inputs_tx.clone();
        tokio::spawn(async move {
            let log = |text: &str| logger.log(Level::Info, &name, text);
            let ended = descendants::end_all(grace, log).await;
            if let Err(e) = &ended {
                logger.log(Level::Warn, &name, &e.to_string());
            }
            let _ = inputs.send(Input::DescendantsEnded {
                ended: ended.is_ok(),
            });
        });
    }

    fn log(&self, level: Level, text: &str) {
        self.config.logger.log(level, &self.config.name, text);
    }
}

/// Why the supervisor's loop cannot start: the control socket cannot be served, or
/// (taking over after an upgrade) the handover lacks an fd it needs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShellError {
    /// The handover does not hold this fd (`fd`, `control socket`, `lock`), or not of
    /// its kind.
    #[error("the handover's {0} is missing")]
    Missing(&'static str),
    /// The control socket cannot be served.
    #[error("control socket: {0}")]
    ControlSocket(#[source] std::io::Error),
}

impl ShellError {
    /// The [`Error`](crate::Error) for a supervisor that did not start, whose control
    /// socket is at `path`: its text is this one.
    pub(crate) fn into_error(self, path: PathBuf) -> crate::error::Error {
        let kind = match &self {
            ShellError::ControlSocket(e) => e.kind(),
            ShellError::Missing(_) => std::io::ErrorKind::NotFound,
        };
        crate::error::Error::ControlSocket {
            path,
            source: std::io::Error::new(kind, self),
        }
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
        flag: config.flag.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn a_control_socket_that_cannot_be_served_keeps_its_text_and_kind() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let shell = ShellError::ControlSocket(denied);
        let text = shell.to_string();
        assert_eq!(text, "control socket: permission denied");
        let error = shell.into_error(PathBuf::from("/run/lb/svc.sock"));
        assert_eq!(error.to_string(), text);
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(matches!(&error, Error::ControlSocket { path, .. } if path.ends_with("svc.sock")));
        assert_eq!(
            ShellError::Missing("lock").to_string(),
            "the handover's lock is missing"
        );
    }
}
