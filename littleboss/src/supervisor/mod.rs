//! The supervisor: holds the listeners, starts and watches the child, reloads it with
//! an overlap, and answers the control socket.
//!
//! One loop ([`Supervisor::run`]) decides everything; each child has a task of its own
//! ([`watch`]) that is the one place waiting for it, and the control server
//! ([`control`]) turns connections into requests for the loop.

mod notify;
mod reap;
mod spawn;
mod state;
mod user;
mod watch;

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, Mode, OFlags};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::{Config, SupervisorInit};
use crate::control::client::{self, AskError};
use crate::control::protocol::{ListenerInfo, ReloadRequest, Request, Response};
use crate::control::server;
use crate::dir;
use crate::logger::Level;
use crate::socket::activation::Activated;
use crate::socket::{self, BoundAddr};
use crate::spec::ListenerSpec;

use state::{ChildRecord, FdTable, ListenerRecord, Phase, ProgramRecord, State};
use watch::{ChildCmd, Event, Exit, Timing, Watch, sleep_until};

/// The first and the largest delay before a persistent program is started again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long resets the backoff.
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// `--littleboss=start`: runs the supervisor in the foreground until it is stopped.
pub(crate) fn start(
    config: Config,
    init: Option<SupervisorInit>,
    specs: Vec<(String, ListenerSpec)>,
    activated: Activated,
    args: Vec<OsString>,
) -> ExitCode {
    let name = config.name.clone();
    let setup = match Setup::new(&config, specs, activated, args) {
        Ok(setup) => setup,
        Err(e) => {
            errln!("littleboss: {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Once, in the supervisor only: after the listeners are bound, before any child.
    if let Some(init) = init {
        if let Err(e) = init() {
            errln!("littleboss: {name}: supervisor init failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            errln!("littleboss: {name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        match Supervisor::new(config, setup) {
            Ok(supervisor) => supervisor.run().await,
            Err(e) => {
                errln!("littleboss: {name}: {e}");
                1
            }
        }
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The control socket file; removed when dropped (or earlier, by `remove`).
#[derive(Debug)]
struct SocketFile(Option<PathBuf>);

impl SocketFile {
    fn remove(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What is done before the runtime starts: the lock, the listeners, the control socket.
struct Setup {
    lock: OwnedFd,
    run_as: Option<user::RunAs>,
    listeners: Vec<ListenerRecord>,
    fds: FdTable,
    program: ProgramRecord,
    control: std::os::unix::net::UnixListener,
    socket: SocketFile,
}

impl Setup {
    fn new(
        config: &Config,
        specs: Vec<(String, ListenerSpec)>,
        activated: Activated,
        args: Vec<OsString>,
    ) -> Result<Setup, String> {
        let run_as = user::resolve(config.user.as_deref(), config.group.as_deref())?;
        let dir = dir::control_dir();
        dir::prepare(&dir).map_err(|e| e.to_string())?;
        let socket_path = dir::socket_path(&dir, &config.name);
        let lock = take_lock(&dir, config, &socket_path)?;
        // The lock is ours: no live supervisor of this name exists, so any socket file
        // left at the path is stale.
        let mut fds = FdTable::default();
        let (opened, unused) = socket::open_all(&specs, config.unix_mode, activated)?;
        for name in unused {
            config.logger.log(
                Level::Warn,
                &config.name,
                &format!(
                    "systemd passed a socket named {name:?} that no listener declares; closed it"
                ),
            );
        }
        let listeners = opened
            .into_iter()
            .map(|(name, network, bound)| ListenerRecord {
                name,
                network,
                bound: bound.map(|b| (b.addr, fds.insert_with_file(b.fd, b.file))),
            })
            .collect();
        let path =
            std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        let exe = spawn::open_executable(Path::new("/proc/self/exe"))?;
        let program = ProgramRecord {
            path,
            args,
            exe: fds.insert(exe),
        };
        let control = bind_control(&socket_path)?;
        Ok(Setup {
            lock,
            run_as,
            listeners,
            fds,
            program,
            control,
            socket: SocketFile(Some(socket_path)),
        })
    }
}

/// Takes `<dir>/<name>.lock`, held for the supervisor's life; if another supervisor
/// holds it, names that supervisor's pid.
fn take_lock(dir: &Path, config: &Config, socket: &Path) -> Result<OwnedFd, String> {
    let path = dir::lock_path(dir, &config.name);
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::RUSR | Mode::WUSR,
    )
    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let who = match client::ask(socket, &Request::Status) {
                Ok(Response::Status(status)) => format!("supervisor pid {}", status.supervisor_pid),
                Ok(_) | Err(AskError::Io(_)) | Err(AskError::NotRunning(_)) => {
                    format!("its lock {} is held", path.display())
                }
            };
            let flag = &config.flag;
            Err(format!(
                "already running ({who}); stop it with --{flag}=stop or reload it with --{flag}=reload"
            ))
        }
        Err(e) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Binds the control socket with mode 0600 from the start (no window in which it is
/// wider), replacing a stale file.
fn bind_control(path: &Path) -> Result<std::os::unix::net::UnixListener, String> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot remove stale socket {}: {e}",
                path.display()
            ));
        }
    }
    let old = rustix::process::umask(Mode::from_raw_mode(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("control socket: {e}"))?;
    Ok(listener)
}

type Waiter = oneshot::Sender<Response>;

/// A reload under way: who asked, and since when.
struct Reloading {
    waiter: Option<Waiter>,
    since: Instant,
    /// The serving child exited on its own meanwhile: what to do if the reload fails.
    orphaned: Option<(ChildRecord, Exit)>,
}

struct Supervisor {
    config: Config,
    state: State,
    fds: FdTable,
    children: HashMap<u64, mpsc::UnboundedSender<ChildCmd>>,
    next_id: u64,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    requests: mpsc::Receiver<server::Incoming>,
    reloading: Option<Reloading>,
    stop_waiters: Vec<Waiter>,
    stop_code: Option<i32>,
    respawn_at: Option<Instant>,
    backoff: Duration,
    done: Option<i32>,
    socket: SocketFile,
    connections: server::Connections,
    /// The flock on `<name>.lock`, held for the supervisor's whole life.
    _lock: OwnedFd,
    run_as: Option<user::RunAs>,
    notify: Option<notify::Notify>,
}

impl Supervisor {
    fn new(config: Config, setup: Setup) -> Result<Supervisor, String> {
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
        let (events_tx, events) = mpsc::unbounded_channel();
        let state = State {
            name: config.name.clone(),
            pid: std::process::id(),
            started: SystemTime::now(),
            phase: Phase::Starting,
            listeners: setup.listeners,
            current: None,
            next: None,
            draining: Vec::new(),
            previous: None,
            waiting: None,
            reloads: 0,
            failures: 0,
            restarts: 0,
        };
        let mut supervisor = Supervisor {
            config,
            state,
            fds: setup.fds,
            children: HashMap::new(),
            next_id: 0,
            events_tx,
            events,
            requests,
            reloading: None,
            stop_waiters: Vec::new(),
            stop_code: None,
            respawn_at: None,
            backoff: BACKOFF_MIN,
            done: None,
            socket: setup.socket,
            connections,
            _lock: setup.lock,
            run_as: setup.run_as,
            notify: None,
        };
        match notify::Notify::from_env() {
            Some(Ok(notify)) => supervisor.notify = Some(notify),
            Some(Err(e)) => supervisor.warn(&e),
            None => {}
        }
        let listeners = supervisor.state.listeners.clone();
        let child = supervisor.spawn_child(setup.program, listeners)?;
        supervisor.log(&format!(
            "supervisor pid {} started child pid {}; listeners {}",
            supervisor.state.pid,
            child.pid,
            supervisor.listeners_shown()
        ));
        supervisor.state.current = Some(child);
        Ok(supervisor)
    }

    /// The loop: returns the supervisor's exit code.
    async fn run(mut self) -> i32 {
        let signals = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        );
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = signals else {
            self.warn("cannot install signal handlers; stopping");
            self.kill_all("the supervisor could not start");
            return 1;
        };
        // As PID 1, orphans are reparented to us: reap them on SIGCHLD.
        let mut orphans = if reap::is_init() {
            signal(SignalKind::child()).ok()
        } else {
            None
        };
        loop {
            if let Some(code) = self.done {
                self.finish(code);
                // Let the answers to `stop` reach their clients before the process exits.
                self.connections.drain(Duration::from_secs(1)).await;
                return code;
            }
            tokio::select! {
                Some(event) = self.events.recv() => self.on_event(event),
                Some((request, waiter)) = self.requests.recv() => self.on_request(request, waiter),
                _ = term.recv() => self.on_stop_signal("SIGTERM"),
                _ = int.recv() => self.on_stop_signal("SIGINT"),
                _ = hup.recv() => self.on_hangup(),
                _ = sleep_until(self.respawn_at), if self.respawn_at.is_some() => self.respawn(),
                Some(()) = recv_signal(orphans.as_mut()) => {
                    reap::reap_orphans(&self.child_pids());
                }
            }
        }
    }

    /// Removes the socket and answers whoever asked to stop.
    fn finish(&mut self, code: i32) {
        self.socket.remove();
        // Close the listeners and remove their socket files before anyone hears "stopped".
        self.fds.clear();
        self.log(&format!("stopped, exit code {code}"));
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(Response::Stopped { code });
        }
    }

    fn on_request(&mut self, request: Request, waiter: Waiter) {
        match request {
            Request::Status => {
                let _ = waiter.send(Response::Status(Box::new(self.state.status())));
            }
            Request::Stop => self.begin_stop(Some(waiter)),
            Request::Reload(request) => self.begin_reload(request, Some(waiter)),
        }
    }

    fn on_stop_signal(&mut self, signal: &str) {
        if self.state.phase == Phase::Stopping {
            self.log(&format!("{signal} again: killing the children now"));
            self.kill_all(&format!("{signal} arrived twice"));
        } else {
            self.log(&format!("{signal}: stopping"));
            self.begin_stop(None);
        }
    }

    /// SIGHUP: reload from the current binary's path, with the same arguments.
    fn on_hangup(&mut self) {
        let Some(program) = self.serving_program() else {
            self.log("SIGHUP: no child to reload");
            return;
        };
        self.log("SIGHUP: reloading");
        let request = ReloadRequest {
            path: program.path.clone().into_os_string().into_vec(),
            args: None,
            listeners: Vec::new(),
        };
        self.begin_reload(request, None);
    }

    /// The program the serving child runs (or the one waiting to be started again).
    fn serving_program(&self) -> Option<&ProgramRecord> {
        self.state
            .current
            .as_ref()
            .map(|c| &c.program)
            .or(self.state.waiting.as_ref())
    }

    fn begin_reload(&mut self, request: ReloadRequest, waiter: Option<Waiter>) {
        let refusal = match self.state.phase {
            Phase::Stopping => Some(format!("{} is stopping", self.state.name)),
            Phase::Reloading => {
                let pid = self.state.next.as_ref().map_or(0, |c| c.pid);
                Some(format!(
                    "another reload is under way (new child pid {pid}); try again when it has ended"
                ))
            }
            Phase::Starting | Phase::Running => None,
        };
        if let Some(reason) = refusal {
            self.warn(&format!("reload refused: {reason}"));
            if let Some(waiter) = waiter {
                let _ = waiter.send(Response::Failed { reason });
            }
            return;
        }
        self.notify(&notify::reloading("reloading"));
        match self.start_reload(request) {
            Ok(child) => {
                self.log(&format!(
                    "reloading: started pid {} ({})",
                    child.pid,
                    child.program.path.display()
                ));
                self.state.next = Some(child);
                self.state.phase = Phase::Reloading;
                // A program waiting to be started again (persist) waits for the reload:
                // it is started only if the reload fails.
                self.respawn_at = None;
                self.reloading = Some(Reloading {
                    waiter,
                    since: Instant::now(),
                    orphaned: None,
                });
            }
            Err(reason) => {
                self.warn(&format!("reload failed: {reason}"));
                self.collect_fds();
                self.notify(&format!(
                    "READY=1\nSTATUS=reload failed; {}",
                    self.serving()
                ));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Response::Failed { reason });
                }
            }
        }
    }

    /// Opens the new executable, binds the listeners the request moves, and starts the
    /// new child beside the serving one.
    fn start_reload(&mut self, request: ReloadRequest) -> Result<ChildRecord, String> {
        let path = PathBuf::from(OsString::from_vec(request.path));
        let exe = spawn::open_executable(&path).inspect_err(|_| self.state.failures += 1)?;
        let args = match (request.args, self.serving_program()) {
            (Some(args), _) => args.into_iter().map(OsString::from_vec).collect(),
            (None, Some(program)) => program.args.clone(),
            (None, None) => vec![path.clone().into_os_string()],
        };
        let listeners = self.rebind(&request.listeners)?;
        let program = ProgramRecord {
            path,
            args,
            exe: self.fds.insert(exe),
        };
        self.spawn_child(program, listeners)
            .inspect_err(|_| self.state.failures += 1)
    }

    /// The listener set for a reload: the current one, with the listeners named in
    /// `overrides` bound anew (a listener whose address does not change keeps its socket).
    fn rebind(&mut self, overrides: &[(String, String)]) -> Result<Vec<ListenerRecord>, String> {
        let mut set = self.state.listeners.clone();
        for (name, address) in overrides {
            let Some(record) = set.iter_mut().find(|l| &l.name == name) else {
                let names: Vec<&str> = set.iter().map(|l| l.name.as_str()).collect();
                return Err(format!(
                    "no listener named {name:?}; the listeners are {}",
                    names.join(", ")
                ));
            };
            let spec = ListenerSpec::with_address(record.network, address)
                .map_err(|e| format!("flag --{name}: {e}"))?;
            let unchanged = match (&record.bound, &spec.address) {
                (None, None) => true,
                (Some((BoundAddr::Unix(path), _)), Some(address)) => path == address,
                (Some((BoundAddr::Ip(bound), _)), Some(_)) => spec
                    .resolve()
                    .is_ok_and(|addrs| bound.port() != 0 && addrs.first() == Some(bound)),
                _ => false,
            };
            if unchanged {
                continue;
            }
            let bound =
                socket::bind(name, &spec, self.config.unix_mode).map_err(|e| e.to_string())?;
            record.bound = bound.map(|b| (b.addr, self.fds.insert_with_file(b.fd, b.file)));
        }
        Ok(set)
    }

    fn begin_stop(&mut self, waiter: Option<Waiter>) {
        self.stop_waiters.extend(waiter);
        if self.state.phase == Phase::Stopping {
            return;
        }
        self.state.phase = Phase::Stopping;
        self.notify("STOPPING=1\nSTATUS=stopping");
        self.respawn_at = None;
        self.state.waiting = None;
        if let Some(next) = &self.state.next {
            self.command(next.id, ChildCmd::Kill("the supervisor is stopping".into()));
        }
        if let Some(reloading) = self.reloading.as_mut() {
            if let Some(waiter) = reloading.waiter.take() {
                let _ = waiter.send(Response::Failed {
                    reason: format!("cancelled: {} is stopping", self.state.name),
                });
            }
        }
        if let Some(current) = &self.state.current {
            self.command(current.id, ChildCmd::Lameduck);
        }
        self.check_stopped();
    }

    fn check_stopped(&mut self) {
        let idle = self.state.current.is_none()
            && self.state.next.is_none()
            && self.state.draining.is_empty();
        if self.state.phase == Phase::Stopping && idle {
            self.done = Some(self.stop_code.unwrap_or(0));
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready { id } => self.on_ready(id),
            Event::Exited { id, exit } => {
                self.children.remove(&id);
                self.on_exit(id, exit);
                self.collect_fds();
                self.check_stopped();
            }
        }
    }

    fn on_ready(&mut self, id: u64) {
        if self.state.next.as_ref().is_some_and(|c| c.id == id) {
            return self.promote();
        }
        if let Some(current) = self.state.current.as_mut().filter(|c| c.id == id) {
            current.ready = true;
            let pid = current.pid;
            if self.state.phase == Phase::Starting {
                self.state.phase = Phase::Running;
            }
            self.log(&format!("child pid {pid} is ready"));
            self.notify(&format!("READY=1\nSTATUS={}", self.serving()));
        }
    }

    /// The new child is ready: it serves, and the old one winds down.
    fn promote(&mut self) {
        let Some(mut next) = self.state.next.take() else {
            return;
        };
        next.ready = true;
        let reloading = self.reloading.take();
        let old = self.state.current.take();
        let old_pid = old.as_ref().map(|c| c.pid);
        if let Some(old) = old {
            self.command(old.id, ChildCmd::Lameduck);
            self.state.previous = Some(old.program.clone());
            self.state.draining.push(old);
        } else if let Some((orphan, _)) = reloading.as_ref().and_then(|r| r.orphaned.as_ref()) {
            self.state.previous = Some(orphan.program.clone());
        } else if let Some(waiting) = self.state.waiting.take() {
            self.state.previous = Some(waiting);
        }
        self.state.waiting = None;
        self.respawn_at = None;
        let new_pid = next.pid;
        self.state.listeners = next.listeners.clone();
        self.state.current = Some(next);
        self.state.reloads += 1;
        self.state.phase = Phase::Running;
        let ms = reloading
            .as_ref()
            .map_or(0, |r| r.since.elapsed().as_millis() as u64);
        let old_shown = old_pid.map_or_else(|| "none".to_string(), |p| p.to_string());
        self.log(&format!(
            "reloaded: pid {old_shown} -> {new_pid} in {ms} ms"
        ));
        self.notify(&format!("READY=1\nSTATUS={}", self.serving()));
        if let Some(waiter) = reloading.and_then(|r| r.waiter) {
            let _ = waiter.send(Response::Reloaded {
                old_pid,
                new_pid,
                ms,
            });
        }
        self.collect_fds();
    }

    fn on_exit(&mut self, id: u64, exit: Exit) {
        if let Some(next) = self.state.next.take_if(|c| c.id == id) {
            let reason = format!("new child pid {} {}", next.pid, exit.describe());
            self.state.failures += 1;
            self.warn(&format!("reload failed: {reason}"));
            self.notify(&format!(
                "READY=1\nSTATUS=reload failed; {}",
                self.serving()
            ));
            let reloading = self.reloading.take();
            if self.state.phase != Phase::Stopping {
                self.state.phase = if self.state.current.as_ref().is_some_and(|c| c.ready) {
                    Phase::Running
                } else {
                    Phase::Starting
                };
            }
            if let Some(reloading) = reloading {
                if let Some(waiter) = reloading.waiter {
                    let _ = waiter.send(Response::Failed { reason });
                }
                if let Some((orphan, orphan_exit)) = reloading.orphaned {
                    self.child_gone(orphan, orphan_exit);
                }
            }
            // A program that was waiting to be started again (persist) is started now.
            if self.state.waiting.is_some() && self.state.phase != Phase::Stopping {
                self.respawn_at = Some(Instant::now() + self.backoff);
            }
            return;
        }
        if let Some(pos) = self.state.draining.iter().position(|c| c.id == id) {
            let old = self.state.draining.remove(pos);
            self.log(&format!("old child pid {} {}", old.pid, exit.describe()));
            return;
        }
        if let Some(current) = self.state.current.take_if(|c| c.id == id) {
            match self.state.phase {
                Phase::Stopping => {
                    self.log(&format!("child pid {} {}", current.pid, exit.describe()));
                    self.stop_code = Some(exit.code());
                }
                Phase::Reloading => {
                    self.log(&format!(
                        "child pid {} {} during a reload; waiting for the new one",
                        current.pid,
                        exit.describe()
                    ));
                    if let Some(reloading) = self.reloading.as_mut() {
                        reloading.orphaned = Some((current, exit));
                    }
                }
                Phase::Starting | Phase::Running => self.child_gone(current, exit),
            }
        }
    }

    /// The serving child exited on its own: fall back, start it again, or stop.
    fn child_gone(&mut self, child: ChildRecord, exit: Exit) {
        self.log(&format!("child pid {} {}", child.pid, exit.describe()));
        if exit.failed() {
            self.state.failures += 1;
        }
        if self.config.fallback && exit.failed() && child.ready {
            if let Some(previous) = self.state.previous.take() {
                self.log(&format!("falling back to {}", previous.path.display()));
                self.state.restarts += 1;
                if self.start_serving(previous) {
                    return;
                }
            }
        }
        if self.config.persist {
            self.backoff = if exit.ran >= BACKOFF_RESET {
                BACKOFF_MIN
            } else {
                self.backoff
            };
            let delay = self.next_backoff();
            self.log(&format!(
                "starting it again in {}",
                watch::human_duration(delay)
            ));
            self.state.waiting = Some(child.program);
            self.state.phase = Phase::Starting;
            self.respawn_at = Some(Instant::now() + delay);
            return;
        }
        self.state.phase = Phase::Stopping;
        self.stop_code = Some(exit.code());
    }

    /// Starts `program` as the serving child (after a fallback or a backoff).
    fn start_serving(&mut self, program: ProgramRecord) -> bool {
        let listeners = self.state.listeners.clone();
        match self.spawn_child(program, listeners) {
            Ok(child) => {
                self.log(&format!("started child pid {}", child.pid));
                self.state.current = Some(child);
                self.state.phase = Phase::Starting;
                true
            }
            Err(reason) => {
                self.state.failures += 1;
                self.warn(&format!("cannot start the child: {reason}"));
                false
            }
        }
    }

    /// The delay before the next restart, doubling the one after it (up to the cap).
    fn next_backoff(&mut self) -> Duration {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        delay
    }

    fn respawn(&mut self) {
        self.respawn_at = None;
        let Some(program) = self.state.waiting.take() else {
            return;
        };
        self.state.restarts += 1;
        if !self.start_serving(program.clone()) {
            self.state.waiting = Some(program);
            self.respawn_at = Some(Instant::now() + self.next_backoff());
        }
    }

    /// Starts a child of `program` with `listeners`, and its watching task.
    fn spawn_child(
        &mut self,
        program: ProgramRecord,
        listeners: Vec<ListenerRecord>,
    ) -> Result<ChildRecord, String> {
        let argv = self.child_argv(&program.args, &listeners);
        let exe = self
            .fds
            .get(program.exe)
            .ok_or_else(|| "the executable's fd is gone".to_string())?;
        let spawned = spawn::spawn(exe, &argv, self.run_as.as_ref()).map_err(|e| {
            format!(
                "cannot start {}: {}",
                program.path.display(),
                socket::describe(&e)
            )
        })?;
        let mut infos = Vec::with_capacity(listeners.len());
        let mut fds = Vec::new();
        for record in &listeners {
            let addr = match &record.bound {
                Some((addr, key)) => {
                    let key = *key;
                    let dup = self
                        .fds
                        .get(key)
                        .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0));
                    match dup {
                        Some(Ok(fd)) => fds.push(fd),
                        // The child cannot get this listener; it will see it as off.
                        _ => {
                            infos.push(ListenerInfo {
                                name: record.name.clone(),
                                network: record.network,
                                addr: None,
                            });
                            continue;
                        }
                    }
                    Some(addr.to_string())
                }
                None => None,
            };
            infos.push(ListenerInfo {
                name: record.name.clone(),
                network: record.network,
                addr,
            });
        }
        self.next_id += 1;
        let id = self.next_id;
        let pid = spawned.process.id().unwrap_or(0);
        let (cmd_tx, cmds) = mpsc::unbounded_channel();
        self.children.insert(id, cmd_tx);
        let watch = Watch {
            id,
            name: self.config.name.clone(),
            process: spawned.process,
            channel: Some(spawned.channel),
            listeners: infos,
            fds,
            timing: Timing {
                hello_timeout: self.config.ready_timeout,
                lameduck: self.config.lameduck,
            },
            cmds,
            events: self.events_tx.clone(),
        };
        tokio::spawn(watch.run());
        Ok(ChildRecord {
            id,
            pid,
            program,
            argv,
            listeners,
            started: SystemTime::now(),
            ready: false,
        })
    }

    /// What a child runs with: the program name, its listener flags as bound (so `ps`
    /// and the program's own parser see the real addresses), then the program's
    /// arguments.
    fn child_argv(&self, args: &[OsString], listeners: &[ListenerRecord]) -> Vec<OsString> {
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

    /// The pids of every child the supervisor started and has not seen exit.
    fn child_pids(&self) -> Vec<u32> {
        let state = &self.state;
        state
            .current
            .iter()
            .chain(state.next.iter())
            .chain(state.draining.iter())
            .map(|c| c.pid)
            .collect()
    }

    fn command(&self, id: u64, cmd: ChildCmd) {
        if let Some(tx) = self.children.get(&id) {
            let _ = tx.send(cmd);
        }
    }

    fn kill_all(&self, reason: &str) {
        for tx in self.children.values() {
            let _ = tx.send(ChildCmd::Kill(reason.to_string()));
        }
    }

    /// Closes the fds that nothing refers to any more.
    fn collect_fds(&mut self) {
        let keep = self.state.fd_keys();
        self.fds.retain(&keep);
    }

    fn listeners_shown(&self) -> String {
        let shown: Vec<String> = self
            .state
            .listeners
            .iter()
            .map(|l| format!("{}={}", l.name, l.shown()))
            .collect();
        if shown.is_empty() {
            "none".to_string()
        } else {
            shown.join(", ")
        }
    }

    fn log(&self, message: &str) {
        self.config
            .logger
            .log(Level::Info, &self.state.name, message);
    }

    fn warn(&self, message: &str) {
        self.config
            .logger
            .log(Level::Warn, &self.state.name, message);
    }

    /// Tells systemd (if it is listening) about the service's state.
    fn notify(&self, state: &str) {
        if let Some(notify) = &self.notify {
            if let Err(e) = notify.send(state) {
                self.warn(&e);
            }
        }
    }

    /// `serving: child pid N (PATH)`, for systemd's status line.
    fn serving(&self) -> String {
        match &self.state.current {
            Some(c) => format!(
                "serving: child pid {} ({})",
                c.pid,
                c.program.path.display()
            ),
            None => "no child running".to_string(),
        }
    }
}

async fn recv_signal(signal: Option<&mut tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}
