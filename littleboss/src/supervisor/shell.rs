//! The supervisor's loop: it turns sockets, signals, exits and timers into
//! [`Input`]s for the [`Machine`], and carries out the [`Effect`]s it returns. It
//! decides nothing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rustix::process::{Pid, Signal as OsSignal};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::Config;
use crate::control::protocol::{ListenerInfo, Response, SupervisorMsg};
use crate::control::server::{self, Incoming};
use crate::logger::Level;
use crate::socket;

use super::child_io::{self, ChildIo, Outgoing};
use super::fds::FdTable;
use super::machine::{ChildId, ClientId, Effect, Input, Machine, Notice, Settings, Signal, Time};
use super::notify::{self, Notify};
use super::prepare::{self, Failure, Opened};
use super::setup::{Setup, SocketFile};
use super::state::{ListenerRecord, ProgramRecord};
use super::{reap, spawn, user, watch_build};

/// What the shell knows of a child the machine started: where to send, whom to kill.
#[derive(Debug)]
struct Handle {
    pid: u32,
    outgoing: mpsc::UnboundedSender<Outgoing>,
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
    requests: mpsc::Receiver<Incoming>,
    connections: server::Connections,
    socket: SocketFile,
    /// The flock on `<name>.lock`, held for the supervisor's whole life.
    _lock: OwnedFd,
    run_as: Option<user::RunAs>,
    notify: Option<Notify>,
    /// The machine's time 0.
    clock: Instant,
}

impl Shell {
    /// Starts serving the control socket (and in dev mode, watching for new builds);
    /// the first child starts with the loop.
    pub(crate) fn new(config: Config, setup: Setup, dev: bool) -> Result<Shell, String> {
        let control = tokio::net::UnixListener::from_std(setup.control)
            .map_err(|e| format!("control socket: {e}"))?;
        let (requests_tx, requests) = mpsc::channel(16);
        let connections = server::Connections::new();
        tokio::spawn(server::serve(
            control,
            requests_tx,
            config.name.clone(),
            config.logger.clone(),
            connections.clone(),
        ));
        let settings = Settings {
            name: config.name.clone(),
            persist: config.persist,
            fallback: config.fallback,
            lameduck_ms: millis(config.lameduck),
            hello_timeout_ms: millis(config.ready_timeout),
            dev,
        };
        let exe_path = setup.program.path.clone();
        // What runs now, as the file it was when the supervisor started: a build that
        // landed since then is new.
        let running = setup
            .fds
            .get(setup.program.exe)
            .and_then(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0).ok())
            .and_then(|fd| std::fs::File::from(fd).metadata().ok());
        let machine = Machine::new(
            settings,
            std::process::id(),
            SystemTime::now(),
            setup.listeners,
            setup.program,
            0,
        );
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        let (prepared_tx, prepared) = mpsc::unbounded_channel();
        let mut shell = Shell {
            config,
            machine,
            fds: setup.fds,
            children: HashMap::new(),
            clients: HashMap::new(),
            inputs_tx,
            inputs,
            prepared_tx,
            prepared,
            requests,
            connections,
            socket: setup.socket,
            _lock: setup.lock,
            run_as: setup.run_as,
            notify: None,
            clock: Instant::now(),
        };
        match Notify::from_env() {
            Some(Ok(notify)) => shell.notify = Some(notify),
            Some(Err(e)) => shell.log(Level::Warn, &e),
            None => {}
        }
        if dev {
            let logger = shell.config.logger.clone();
            let name = shell.config.name.clone();
            let log = move |level: Level, text: &str| logger.log(level, &name, text);
            watch_build::spawn(exe_path, running, shell.inputs_tx.clone(), log);
        }
        Ok(shell)
    }

    /// The loop: returns the supervisor's exit code.
    pub(crate) async fn run(mut self) -> i32 {
        let signals = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        );
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = signals else {
            self.log(Level::Warn, "cannot install signal handlers; stopping");
            return 1;
        };
        // As PID 1, orphans are reparented to us: reap them on SIGCHLD.
        let mut orphans = if reap::is_init() {
            signal(SignalKind::child()).ok()
        } else {
            None
        };
        loop {
            self.carry_out();
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
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
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
            } => {
                let client = ClientId(client);
                self.clients.insert(client, reply);
                self.handle(Input::Request { client, request });
            }
            Incoming::Gone { client } => {
                let client = ClientId(client);
                self.clients.remove(&client);
                self.handle(Input::ClientGone { client });
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
            Effect::Kill { child } => {
                if let Some(handle) = self.children.get(&child) {
                    kill(handle.pid);
                }
            }
            Effect::Reap { child } => {
                if let Some(handle) = self.children.remove(&child) {
                    child_io::reap(handle.pid);
                }
            }
            Effect::Prepare {
                path,
                args,
                listeners,
                overrides,
            } => {
                let done = self.prepared_tx.clone();
                let unix_mode = self.config.unix_mode;
                tokio::spawn(async move {
                    let result =
                        prepare::open(path.clone(), listeners.clone(), overrides, unix_mode).await;
                    let _ = done.send(Prepared {
                        result,
                        path,
                        args,
                        listeners,
                    });
                });
            }
            Effect::Answer { client, response } => {
                if let Some(reply) = self.clients.remove(&client) {
                    let _ = reply.send(response);
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
                    format!(
                        "cannot start {}: {}",
                        program.path.display(),
                        socket::describe(&e)
                    )
                })
            }
            None => Err(format!(
                "cannot start {}: its fd is gone",
                program.path.display()
            )),
        };
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err(reason) => return self.handle(Input::SpawnFailed { child, reason }),
        };
        let (outgoing_tx, outgoing) = mpsc::unbounded_channel();
        self.children.insert(
            child,
            Handle {
                pid: spawned.pid,
                outgoing: outgoing_tx,
            },
        );
        tokio::spawn(
            ChildIo {
                id: child,
                pid: spawned.pid,
                pidfd: spawned.pidfd,
                channel: spawned.channel,
                outgoing,
                inputs: self.inputs_tx.clone(),
            }
            .run(),
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
        if let Some(handle) = self.children.get(&child) {
            let _ = handle.outgoing.send(Outgoing::Message(msg, fds));
        }
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
