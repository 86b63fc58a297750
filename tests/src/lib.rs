//! Support for the littleboss integration tests, and the helper programs they run.
//!
//! The tests run real processes with real sockets and signals, on loopback only:
//!
//! - `src/bin/lb-http.rs` (service `lbhttp`): an async HTTP server with behaviour
//!   switches (`--exit-code=N`, `--crash-after-ms=N`, `--never-ready`, ...); see its
//!   documentation.
//! - `src/bin/lb-sync.rs` (service `lbsync`): the same answer from a plain `fn main`.
//!
//! Both answer every request with `pid PID exe EXE mode MODE\n` (see [`Answer`]) and
//! print `... pid PID serving LISTENER on ADDR` on stderr for each listener they serve.
//!
//! A test builds an [`Env`] (a private `LITTLEBOSS_DIR` and a place for logs), runs
//! commands with it ([`Env::run`]), and starts supervisors ([`Env::start`]) or other
//! long-running processes ([`Env::spawn`]) as guards that kill everything they started
//! when dropped, even when the test panics, and then print the process's stderr. It
//! waits for conditions with [`wait_for`] (or [`Spawned::wait_for`], which adds the
//! process's stderr to the failure), never with bare sleeps.
//!
//! ```ignore
//! // (`bin!` works in integration tests only: it reads `CARGO_BIN_EXE_*`.)
//! use littleboss_tests::{Env, NO_ARGS, bin, get};
//!
//! let env = Env::new();
//! let sup = env.start(bin!("lb-http"), NO_ARGS);
//! let answer = get(sup.addr("http")).unwrap();
//! assert_eq!(answer.pid, sup.child_pid());
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
pub use serde_json::Value;

/// How long a test waits for a condition before it fails. Generous: the suite must pass
/// on a loaded two-core machine; a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// No arguments, for [`Env::spawn`], [`Env::start`] and [`Env::run`]: `&[]` alone
/// leaves the argument type unknown.
pub const NO_ARGS: &[&str] = &[];

/// How often [`wait_for`] looks at its condition.
pub const POLL: Duration = Duration::from_millis(15);

/// How long a command run with [`Env::run`] may take (a `stop` waits for the child's
/// lameduck) before it is killed and the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of a binary of this package, for an integration test: `bin!("lb-http")`.
///
/// Expands to `env!("CARGO_BIN_EXE_<name>")` in the calling test, as a `&Path`.
#[macro_export]
macro_rules! bin {
    ($name:literal) => {
        ::std::path::Path::new(env!(concat!("CARGO_BIN_EXE_", $name)))
    };
}

/// The path of an example of `littleboss-examples`, for an integration test:
/// `example!("http")`; see [`built_example`].
#[macro_export]
macro_rules! example {
    ($name:expr) => {
        $crate::built_example($crate::bin!("lb-http"), $name)
    };
}

/// Example `name` of `littleboss-examples` as `cargo test --workspace` (the README's test
/// command) builds it, `<target>/debug/examples/NAME`, found next to `bin`, a binary of
/// this package. Panics, saying how to build it, if it is not there: `cargo test -p
/// littleboss-tests` alone does not build it.
pub fn built_example(bin: &Path, name: &str) -> PathBuf {
    let path = bin
        .parent()
        .expect("the binaries' directory")
        .join("examples")
        .join(name);
    assert!(
        path.is_file(),
        "the example {name} is not built at {}: run `cargo test --workspace`, or \
         `cargo build -p littleboss-examples --examples` before `cargo test -p littleboss-tests`",
        path.display()
    );
    path
}

/// Runs `io` again while a signal to this test process interrupts it.
///
/// Linux may end a blocking socket call that has a timeout with `EINTR` when the process
/// is stopped and continued, even with no signal handler (signal(7)), as a loaded CI
/// machine can do: a raw client in a test reads again instead of failing.
pub fn again_if_interrupted<T>(mut io: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match io() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            done => return done,
        }
    }
}

/// Polls `condition` every [`POLL`] until it returns `Some`, and returns that value.
///
/// Panics, naming `what`, if `timeout` passes first.
pub fn wait_for<T>(timeout: Duration, what: &str, condition: impl FnMut() -> Option<T>) -> T {
    match poll(timeout, condition) {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// [`wait_for`] without the panic: `None` if `timeout` passed.
fn poll<T>(timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Panics unless the test runs as root: a test that needs root is `#[ignore = "needs
/// root"]` and run on purpose (`-- --ignored`, as `.ci/run` does), and must never pass
/// without checking anything. `what` says what it needs root for.
#[track_caller]
pub fn require_root(what: &str) {
    let uid = rustix::process::geteuid().as_raw();
    assert_eq!(
        uid, 0,
        "this test needs root to {what}, but runs as uid {uid}: run the ignored tests as root"
    );
}

/// The program `name` on `PATH`; panics, naming the Debian package `package` that has
/// it, if there is none: a test that needs a tool is `#[ignore]`d and run on purpose
/// (by `.ci/run`, which installs it), and must not pass without it.
pub fn required_tool(name: &str, package: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| panic!("{name} not found: install the Debian package {package}"))
}

/// A test's private littleboss environment: a temporary directory that holds the
/// control directory (`LITTLEBOSS_DIR`), the logs of the processes it starts, and
/// copies of binaries. Everything is removed when it is dropped.
///
/// Guards borrow their `Env`, so they are always dropped (and their processes killed)
/// before the directory goes away.
#[derive(Debug)]
pub struct Env {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    counter: AtomicUsize,
    portable: bool,
}

impl Default for Env {
    fn default() -> Env {
        Env::new()
    }
}

impl Env {
    /// A new environment. The control directory does not exist yet; the first
    /// supervisor creates it (mode 0700), as it would on a real system.
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("lbtest.")
            .tempdir()
            .expect("create a temporary directory");
        let dir = tmp.path().join("run");
        Env {
            tmp,
            dir,
            counter: AtomicUsize::new(0),
            portable: false,
        }
    }

    /// A new environment whose commands all run with `LITTLEBOSS_PORTABLE=1`: on Linux
    /// the supervisor takes the paths macOS takes (a stream channel, close-on-exec by
    /// hand, executables run by path, exits seen on `SIGCHLD`).
    pub fn portable() -> Env {
        Env {
            portable: true,
            ..Env::new()
        }
    }

    /// The temporary directory (logs and binary copies live here).
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The control directory, `LITTLEBOSS_DIR` for every command of this environment.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The control socket of service `name`: `$LITTLEBOSS_DIR/<name>.sock`.
    pub fn socket(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sock"))
    }

    /// The lock file of service `name`: `$LITTLEBOSS_DIR/<name>.lock`.
    pub fn lock(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    /// A command running `bin` in this environment: `LITTLEBOSS_DIR` set, no channel fd
    /// variable inherited, stdin from `/dev/null`; `LITTLEBOSS_PORTABLE=1` if the
    /// environment is [`portable`](Self::portable).
    pub fn command(&self, bin: &Path) -> Command {
        let mut command = Command::new(bin);
        command
            .env("LITTLEBOSS_DIR", &self.dir)
            .env_remove("LITTLEBOSS_CHANNEL_FD")
            .env_remove("LITTLEBOSS_SUPERVISOR_PID")
            .stdin(Stdio::null());
        match self.portable {
            true => command.env("LITTLEBOSS_PORTABLE", "1"),
            false => command.env_remove("LITTLEBOSS_PORTABLE"),
        };
        command
    }

    /// Runs `bin ARGS` to completion (at most [`COMMAND_TIMEOUT`]) and returns its exit
    /// status and output. For short commands (`stop`, `status`, `reload`...): a
    /// long-running process belongs in [`spawn`](Self::spawn).
    pub fn run<S: AsRef<OsStr>>(&self, bin: &Path, args: &[S]) -> Outcome {
        let mut command = self.command(bin);
        command.args(args);
        run_for(command, COMMAND_TIMEOUT)
    }

    /// `bin --littleboss=status-json`, parsed; panics (with the output) if it fails.
    pub fn status_json(&self, bin: &Path) -> Value {
        self.try_status_json(bin)
            .unwrap_or_else(|outcome| panic!("status-json failed: {outcome}"))
    }

    /// `bin --littleboss=status-json`, parsed, or the outcome of the failed command.
    pub fn try_status_json(&self, bin: &Path) -> Result<Value, Outcome> {
        let outcome = self.run(bin, &["--littleboss=status-json"]);
        if outcome.code() != Some(0) {
            return Err(outcome);
        }
        match serde_json::from_str(&outcome.stdout) {
            Ok(value) => Ok(value),
            Err(e) => panic!("status-json printed invalid JSON ({e}): {outcome}"),
        }
    }

    /// Starts `bin ARGS` as a guarded long-running process (bypass mode, or any mode),
    /// in a process group of its own, with its stdout and stderr captured to files.
    pub fn spawn<S: AsRef<OsStr>>(&self, bin: &Path, args: &[S]) -> Spawned {
        self.spawn_full(bin, args, &[], None, |_| {})
    }

    /// [`spawn`](Self::spawn), with the variables `vars` added to its environment.
    pub fn spawn_with<S: AsRef<OsStr>>(
        &self,
        bin: &Path,
        args: &[S],
        vars: &[(&str, &str)],
    ) -> Spawned {
        self.spawn_full(bin, args, vars, None, |_| {})
    }

    /// [`spawn`](Self::spawn), with stderr going to `stderr` if given (a pipe that
    /// nobody reads, say) instead of a file; [`Spawned::stderr`] is empty then.
    pub fn spawn_with_stderr<S: AsRef<OsStr>>(
        &self,
        bin: &Path,
        args: &[S],
        stderr: Option<Stdio>,
    ) -> Spawned {
        self.spawn_full(bin, args, &[], stderr, |_| {})
    }

    /// [`spawn_with`](Self::spawn_with), with `prepare` applied to the command just
    /// before it starts (to leave it an fd, say).
    pub fn spawn_prepared<S: AsRef<OsStr>>(
        &self,
        bin: &Path,
        args: &[S],
        vars: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> Spawned {
        self.spawn_full(bin, args, vars, None, prepare)
    }

    fn spawn_full<S: AsRef<OsStr>>(
        &self,
        bin: &Path,
        args: &[S],
        vars: &[(&str, &str)],
        stderr: Option<Stdio>,
        prepare: impl FnOnce(&mut Command),
    ) -> Spawned {
        let label = format!(
            "{} {}",
            bin.file_name().unwrap_or(bin.as_os_str()).to_string_lossy(),
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let stdout_path = self.path().join(format!("process-{n}.stdout"));
        let stderr_path = self.path().join(format!("process-{n}.stderr"));
        let stderr = stderr.unwrap_or_else(|| {
            File::create(&stderr_path)
                .expect("create the stderr file")
                .into()
        });
        let mut command = self.command(bin);
        command
            .args(args)
            .envs(vars.iter().copied())
            .stdout(File::create(&stdout_path).expect("create the stdout file"))
            .stderr(stderr)
            .process_group(0);
        prepare(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        Spawned {
            label: label.trim_end().to_string(),
            pid: child.id(),
            child: Mutex::new(child),
            exited: Mutex::new(None),
            stdout_path,
            stderr_path,
            seen: Mutex::new(Vec::new()),
        }
    }

    /// Starts `bin --littleboss=start ARGS` and waits until its first child is ready
    /// (status `running`).
    pub fn start<S: AsRef<OsStr>>(&self, bin: &Path, args: &[S]) -> Supervisor<'_> {
        let supervisor = self.start_nowait(bin, args);
        supervisor.wait_running();
        supervisor
    }

    /// Starts `bin --littleboss=start ARGS` without waiting for anything.
    pub fn start_nowait<S: AsRef<OsStr>>(&self, bin: &Path, args: &[S]) -> Supervisor<'_> {
        self.start_full(bin, args, &[], None)
    }

    /// Starts `bin --littleboss=start ARGS` with the variables `vars` added to its
    /// environment, without waiting for anything.
    pub fn start_with<S: AsRef<OsStr>>(
        &self,
        bin: &Path,
        args: &[S],
        vars: &[(&str, &str)],
    ) -> Supervisor<'_> {
        self.start_full(bin, args, vars, None)
    }

    /// [`start_nowait`](Self::start_nowait), with the supervisor's stderr going to
    /// `stderr` if given (see [`spawn_with_stderr`](Self::spawn_with_stderr)).
    pub fn start_with_stderr<S: AsRef<OsStr>>(
        &self,
        bin: &Path,
        args: &[S],
        stderr: Option<Stdio>,
    ) -> Supervisor<'_> {
        self.start_full(bin, args, &[], stderr)
    }

    fn start_full<S: AsRef<OsStr>>(
        &self,
        bin: &Path,
        args: &[S],
        vars: &[(&str, &str)],
        stderr: Option<Stdio>,
    ) -> Supervisor<'_> {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--littleboss=start")];
        all.extend(args.iter().map(AsRef::as_ref));
        Supervisor {
            env: self,
            bin: bin.to_path_buf(),
            process: self.spawn_full(bin, &all, vars, stderr, |_| {}),
        }
    }

    /// Starts `bin --littleboss=dev` and waits until its first child is ready. Its
    /// client commands (`status-json`...) run `client`, another build of the same
    /// service: `bin`'s path is where the test lands new builds, so at moments it holds
    /// no file, or one being written.
    pub fn start_dev(&self, bin: &Path, client: &Path) -> Supervisor<'_> {
        let supervisor = Supervisor {
            env: self,
            bin: client.to_path_buf(),
            process: self.spawn(bin, &["--littleboss=dev"]),
        };
        supervisor.wait_running();
        supervisor
    }

    /// Copies `bin` to `<tmp>/<name>` (executable, with [`copy_binary`]) and returns the
    /// new path: "a second binary" for a reload.
    pub fn copy_binary(&self, bin: &Path, name: &str) -> PathBuf {
        let target = self.path().join(name);
        copy_binary(bin, &target);
        target
    }
}

/// Whether `nobody` can execute `path`: every directory above it searchable by others,
/// the file executable by others.
pub fn executable_by_others(path: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.permissions().mode());
    mode(path) & 0o001 != 0 && path.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0)
}

/// A 0755 temporary directory, for what `nobody` must reach.
pub fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("lbpriv.")
        .tempdir()
        .expect("create a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755");
    dir
}

/// `bin` itself if `nobody` can execute it, else a 0755 copy of it in `dir` (copied by
/// [`copy_binary`], so that no process of this test holds it open for writing).
pub fn runnable_by_nobody(bin: &Path, dir: &Path) -> PathBuf {
    if executable_by_others(bin) {
        return bin.to_path_buf();
    }
    let target = dir.join(bin.file_name().expect("a file name"));
    copy_binary(bin, &target);
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(executable_by_others(&target), "{}", target.display());
    target
}

/// Copies `bin` to `target`, and panics if that fails.
///
/// The copy is made by a `cp` process, so that no process of the test binary ever holds
/// the new file open for writing (a file open for writing cannot be executed: ETXTBSY,
/// and a concurrent test's fork would inherit the fd).
pub fn copy_binary(bin: &Path, target: &Path) {
    let mut cp = Command::new("cp");
    cp.arg("--").arg(bin).arg(target);
    let outcome = run_for(cp, COMMAND_TIMEOUT);
    assert_eq!(
        outcome.code(),
        Some(0),
        "copying {} failed: {outcome}",
        bin.display()
    );
}

/// How a command that ran to completion ended.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Outcome {
    /// The exit code (`None` if a signal killed it).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.status, self.stdout, self.stderr
        )
    }
}

/// `eprintln!` in one `write`: std's stderr is unbuffered, so `eprintln!` writes each
/// piece of its format on its own, and on a loaded machine the supervisor's line (or
/// another child's) can land between two pieces of a line a test parses. The test
/// programs print their lines with this instead.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut line = ::std::format!($($arg)*);
        line.push('\n');
        let _ = ::std::io::stderr().write_all(line.as_bytes());
    }};
}

/// `cargo` (the one running the tests, if any), set to build as lean as this
/// workspace's own `dev` profile does: line tables for debug info, no incremental
/// caches. A test that builds a crate of its own (another workspace, whose profile is
/// cargo's default) keeps the disk it uses down so; a setting already in the
/// environment wins.
pub fn lean_cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    for (name, value) in [
        ("CARGO_PROFILE_DEV_DEBUG", "line-tables-only"),
        ("CARGO_INCREMENTAL", "0"),
    ] {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
    command
}

/// Runs `command` to completion (stdin from `/dev/null`, output captured), killing it
/// and panicking if it takes longer than `timeout`: [`Env::run`] for a command of any
/// environment.
pub fn run_for(mut command: Command, timeout: Duration) -> Outcome {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = poll(timeout, || child.try_wait().expect("wait for a command"));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{shown} did not finish within {timeout:?}; stderr so far:\n{}",
            stderr.join().unwrap_or_default()
        );
    };
    Outcome {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A process identity that survives pid reuse: its pid and its start time (in clock
/// ticks since boot, from `/proc/PID/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProcId {
    pid: u32,
    start: u64,
}

impl ProcId {
    /// The process `pid` as it is now, if it exists.
    fn of(pid: u32) -> Option<ProcId> {
        proc_stat(pid).map(|stat| ProcId {
            pid,
            start: stat.start,
        })
    }

    /// Whether `pid` still names this very process.
    fn is_same(&self) -> bool {
        ProcId::of(self.pid) == Some(*self)
    }
}

/// The few fields of `/proc/PID/stat` the tests use.
struct ProcStat {
    state: char,
    start: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold anything, so split after its last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        // Field 22 of the file, the 20th after the command.
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The state letter of process `pid` (`R`, `S`, `Z`...), `None` if it does not exist.
pub fn proc_state(pid: u32) -> Option<char> {
    proc_stat(pid).map(|stat| stat.state)
}

/// Whether `/proc/PID` exists at all: a zombie's still does; a process that exited and
/// was reaped has none.
pub fn proc_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A field of `/proc/PID/status` (`PPid`, `NSpid`, `VmRSS`, ...), without its name.
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().to_string())
}

/// The numbers of a field of `/proc/PID/status` that holds a list of them (`Uid`, `Gid`,
/// `Groups`).
pub fn status_numbers(pid: u32, field: &str) -> Option<Vec<u64>> {
    let value = status_field(pid, field)?;
    value.split_whitespace().map(|n| n.parse().ok()).collect()
}

/// The inodes of the sockets process `pid` holds (`socket:[INODE]` in `/proc/PID/fd`).
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    let mut inodes = Vec::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return inodes;
    };
    for entry in entries.flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
            {
                inodes.push(inode);
            }
        }
    }
    inodes.sort_unstable();
    inodes
}

/// Whether process `pid` is gone: no `/proc/PID`, or a zombie (exited, not yet reaped).
pub fn is_gone(pid: u32) -> bool {
    match proc_stat(pid) {
        None => true,
        Some(stat) => matches!(stat.state, 'Z' | 'X' | 'x'),
    }
}

/// Raises this process's soft limit on open fds to its hard limit: room for this
/// end of thousands of connections.
pub fn raise_fd_limit() {
    let nofile = rustix::process::Resource::Nofile;
    let limit = rustix::process::getrlimit(nofile);
    if let Some(hard) = limit.maximum {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        rustix::process::setrlimit(nofile, raised).expect("the fd limit raised");
    }
}

/// Whether process `pid` runs (exists and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    !is_gone(pid)
}

/// Waits (up to [`DEADLINE`]) until process `pid` is gone; `what` names it in the panic.
pub fn wait_gone(pid: u32, what: &str) {
    wait_for(DEADLINE, &format!("{what} (pid {pid}) to exit"), || {
        is_gone(pid).then_some(())
    });
}

/// The children of process `pid`, from `/proc/PID/task/*/children`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return children;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children.sort_unstable();
    children.dedup();
    children
}

/// Every process of the host whose parent is `parent`, from `/proc/*/status` (unlike
/// [`children_of`], this also sees the children of a process whose threads list none,
/// and zombies).
pub fn processes_with_parent(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let ppid = status_field(pid, "PPid").and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}

/// The children of `pid` that have exited and not been reaped (state `Z`), among
/// [`processes_with_parent`].
pub fn zombie_children(pid: u32) -> Vec<u32> {
    processes_with_parent(pid)
        .into_iter()
        .filter(|child| proc_state(*child) == Some('Z'))
        .collect()
}

fn rustix_pid(pid: u32) -> io::Result<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad pid {pid}")))
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: Signal) -> io::Result<()> {
    rustix::process::kill_process(rustix_pid(pid)?, signal).map_err(io::Error::from)
}

/// Sends `signal` to process group `pgid`.
pub fn send_signal_to_group(pgid: u32, signal: Signal) -> io::Result<()> {
    rustix::process::kill_process_group(rustix_pid(pgid)?, signal).map_err(io::Error::from)
}

/// SIGKILL to process `pid` and to its process group (littleboss children lead groups of
/// their own); errors (already gone) are ignored.
pub fn kill(pid: u32) {
    let _ = send_signal_to_group(pid, Signal::KILL);
    let _ = send_signal(pid, Signal::KILL);
}

/// A long-running process started by [`Env::spawn`], in a process group of its own.
///
/// On drop it SIGKILLs the process, every child it has, and every process recorded with
/// [`track`](Self::track) (if that pid still names the same process), reaps it, and, if
/// the test is panicking, prints its stdout and stderr.
#[derive(Debug)]
pub struct Spawned {
    label: String,
    pid: u32,
    child: Mutex<Child>,
    exited: Mutex<Option<ExitStatus>>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    seen: Mutex<Vec<ProcId>>,
}

impl Spawned {
    /// Its pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything it (and its children, which share it) printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Everything it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Its exit status if it has exited (it is reaped then).
    pub fn try_exit(&self) -> Option<ExitStatus> {
        let mut exited = lock(&self.exited);
        if exited.is_none() {
            *exited = lock(&self.child).try_wait().expect("try_wait");
        }
        *exited
    }

    /// Waits (up to [`DEADLINE`]) for it to exit, and returns its status.
    pub fn wait_exit(&self) -> ExitStatus {
        self.wait_for(&format!("{} to exit", self.label), || self.try_exit())
    }

    /// Waits for it to exit and returns its exit code (panics if a signal killed it).
    pub fn wait_code(&self) -> i32 {
        let status = self.wait_exit();
        status.code().unwrap_or_else(|| {
            panic!(
                "{} was killed by signal {:?}\n{}",
                self.label,
                status.signal(),
                self.logs()
            )
        })
    }

    /// Waits for it to exit, and panics (with its logs) unless its exit code is `code`
    /// and its stderr says `message`.
    #[track_caller]
    pub fn assert_exit(&self, code: i32, message: &str) {
        assert_eq!(self.wait_code(), code, "{}", self.logs());
        assert!(self.stderr().contains(message), "{}", self.logs());
    }

    /// Sends it `signal` (panics if it has already exited and been reaped).
    pub fn signal(&self, signal: Signal) {
        let exited = lock(&self.exited);
        assert!(
            exited.is_none(),
            "cannot signal {}: it has exited ({exited:?})",
            self.label
        );
        send_signal(self.pid, signal).expect("send a signal");
    }

    /// Records `pid` (a process it started) to be killed on drop if it is still the
    /// same process then.
    pub fn track(&self, pid: u32) {
        if let Some(id) = ProcId::of(pid) {
            let mut seen = lock(&self.seen);
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
    }

    /// [`wait_for`] with [`DEADLINE`], adding this process's stderr to the failure.
    pub fn wait_for<T>(&self, what: &str, condition: impl FnMut() -> Option<T>) -> T {
        match poll(DEADLINE, condition) {
            Some(value) => value,
            None => panic!(
                "timed out after {DEADLINE:?} waiting for {what}\n{}",
                self.logs()
            ),
        }
    }

    /// Waits for a line of its stderr that contains `needle`, and returns that line.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for(
            &format!("{needle:?} on the stderr of {}", self.label),
            || {
                self.stderr()
                    .lines()
                    .find(|line| line.contains(needle))
                    .map(str::to_string)
            },
        )
    }

    /// Waits for `... pid PID serving LISTENER on ADDR` from the helper program with pid
    /// `pid` on its stderr, and returns the address.
    pub fn wait_serving(&self, pid: u32, listener: &str) -> SocketAddr {
        let line = self.wait_for_log(&format!("pid {pid} serving {listener} on "));
        let (_, addr) = line
            .rsplit_once(" on ")
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        addr.trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
    }

    /// Its label, stdout and stderr, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- stdout of {} (pid {}) ---\n{}--- stderr of {} (pid {}) ---\n{}-----------",
            self.label,
            self.pid,
            self.stdout(),
            self.label,
            self.pid,
            self.stderr()
        )
    }

    /// Kills everything; see the type's documentation.
    fn cleanup(&self) {
        let mut targets: Vec<u32> = Vec::new();
        if self.try_exit().is_none() {
            // Freeze it so that it starts nothing new while its children are listed;
            // a stopped process cannot reap them either, so their pids stay theirs.
            let _ = send_signal_to_group(self.pid, Signal::STOP);
            targets.extend(children_of(self.pid));
        }
        targets.extend(
            lock(&self.seen)
                .iter()
                .filter(|id| id.is_same())
                .map(|id| id.pid),
        );
        for pid in &targets {
            kill(*pid);
        }
        if self.try_exit().is_none() {
            let _ = send_signal_to_group(self.pid, Signal::KILL);
            let mut child = lock(&self.child);
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                *lock(&self.exited) = Some(status);
            }
        }
        // Orphans are reaped by init; wait (briefly) so that the next test does not
        // see them, without failing a drop over it.
        let _ = poll(Duration::from_secs(5), || {
            targets.iter().all(|pid| is_gone(*pid)).then_some(())
        });
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.cleanup();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A supervisor started with `--littleboss=start` by [`Env::start`]: a [`Spawned`]
/// (it dereferences to it) that also knows its binary and environment, to ask for its
/// status. Every child pid a status shows is tracked, so that the drop kills it too.
#[derive(Debug)]
pub struct Supervisor<'e> {
    env: &'e Env,
    bin: PathBuf,
    process: Spawned,
}

impl<'e> Supervisor<'e> {
    /// The same supervisor, its client commands ([`run`](Self::run), its status) run by
    /// `client` instead: a binary of the same service whose own commands need no extra
    /// arguments.
    pub fn with_client(self, client: &Path) -> Supervisor<'e> {
        Supervisor {
            bin: client.to_path_buf(),
            ..self
        }
    }
}

impl Deref for Supervisor<'_> {
    type Target = Spawned;

    fn deref(&self) -> &Spawned {
        &self.process
    }
}

impl Supervisor<'_> {
    /// The binary it was started from (its client commands run this binary too).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Runs its binary with `args` in its environment (`--littleboss=stop`, ...).
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Outcome {
        self.env.run(&self.bin, args)
    }

    /// Its `status-json`, or the failed command's outcome.
    pub fn try_status(&self) -> Result<Value, Outcome> {
        let status = self.env.try_status_json(&self.bin)?;
        if let Some(pid) = status["child_pid"].as_u64() {
            self.track(u32::try_from(pid).expect("a pid"));
        }
        Ok(status)
    }

    /// Its `status-json`; panics (with its stderr) if the command fails.
    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|outcome| panic!("status-json failed: {outcome}\n{}", self.logs()))
    }

    /// Waits until its status says `running` with a child, and returns that status.
    /// Fails at once if the supervisor exits.
    pub fn wait_running(&self) -> Value {
        self.wait_for("the supervisor to report state running", || {
            if let Some(status) = self.try_exit() {
                panic!(
                    "the supervisor exited ({status}) before it was running\n{}",
                    self.logs()
                );
            }
            let status = self.try_status().ok()?;
            (status["state"] == "running" && status["child_pid"].is_u64()).then_some(status)
        })
    }

    /// Waits until its status says `reloading`. Fails at once if the supervisor exits.
    pub fn wait_reloading_state(&self) {
        self.wait_for("the supervisor to report state reloading", || {
            if let Some(status) = self.try_exit() {
                panic!("the supervisor exited ({status})\n{}", self.logs());
            }
            self.try_status()
                .ok()
                .filter(|s| s["state"] == "reloading")
                .map(drop)
        });
    }

    /// The serving child's pid, from its status.
    pub fn child_pid(&self) -> u32 {
        let status = self.status();
        let pid = status["child_pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no child_pid in {status}\n{}", self.logs()));
        u32::try_from(pid).expect("a pid")
    }

    /// The address listener `name` is bound to, from its status.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let status = self.status();
        listener_addr(&status, name)
            .unwrap_or_else(|| panic!("listener {name} is not bound in {status}"))
    }
}

/// The address of listener `name` in a status (`"tcp:127.0.0.1:41234"`), or `None` if
/// it is `off` or missing.
pub fn listener_addr(status: &Value, name: &str) -> Option<SocketAddr> {
    let shown = status["listeners"][name].as_str()?;
    let (_, addr) = shown.split_once(':')?;
    addr.parse().ok()
}

/// The serving child's command line from a status (`child_args`), without the listener
/// flags (`--NAME=ADDR` for a NAME in `listeners`) that the supervisor may add: the
/// program's own arguments, program name first.
pub fn program_args(status: &Value) -> Vec<String> {
    let listeners = status["listeners"].as_object();
    let is_listener_flag = |arg: &str| {
        let Some((flag, _)) = arg.split_once('=') else {
            return false;
        };
        let name = flag.trim_start_matches('-');
        flag.starts_with('-') && listeners.is_some_and(|l| l.contains_key(name))
    };
    status["child_args"]
        .as_array()
        .map(|args| {
            args.iter()
                .filter_map(Value::as_str)
                .filter(|arg| !is_listener_flag(arg))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The switches of a helper program: its arguments (`lb.args()`) after the program
/// name, each as UTF-8 or an error that names it, without `--` (`start ... -- ARGS`
/// passes the `--` on; the switches after it are the program's all the same).
pub fn switches(args: Vec<OsString>) -> impl Iterator<Item = Result<String, String>> {
    args.into_iter()
        .skip(1)
        .filter(|arg| arg != "--")
        .map(|arg| {
            arg.into_string()
                .map_err(|a| format!("argument {a:?} is not UTF-8"))
        })
}

/// What the helper programs answer: `pid PID exe EXE mode MODE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The pid of the process that answered.
    pub pid: u32,
    /// Its executable (`std::env::current_exe`).
    pub exe: String,
    /// `bypass` or `supervised`.
    pub mode: String,
}

impl Answer {
    /// Parses a response body.
    pub fn parse(body: &str) -> Option<Answer> {
        let rest = body.strip_prefix("pid ")?;
        let (pid, rest) = rest.split_once(" exe ")?;
        let (exe, mode) = rest.rsplit_once(" mode ")?;
        Some(Answer {
            pid: pid.parse().ok()?,
            exe: exe.to_string(),
            mode: mode.trim_end().to_string(),
        })
    }
}

/// How long [`http_get`] waits to connect, and for each read and write.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /` on `addr` over a new connection (`Connection: close`); returns the body of a
/// `200` response, or an error (refused, timed out, another status...).
pub fn http_get(addr: SocketAddr) -> io::Result<String> {
    http_get_within(addr, HTTP_TIMEOUT)
}

/// [`http_get`], waiting up to `timeout` (instead of [`HTTP_TIMEOUT`]) to connect, and
/// for each read and write.
pub fn http_get_within(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let response = String::from_utf8_lossy(&bytes);
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("incomplete response from {addr}: {response:?}"),
        ));
    };
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected response from {addr}: {head:?}"),
        ));
    }
    Ok(body.to_string())
}

/// [`http_get`], with the body parsed as an [`Answer`].
pub fn get(addr: SocketAddr) -> io::Result<Answer> {
    let body = http_get(addr)?;
    Answer::parse(&body).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected body from {addr}: {body:?}"),
        )
    })
}

/// Whether nothing listens on `addr` any more: it can be bound again.
pub fn port_is_free(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed; a
/// test that binds it later may race another process, which is unlikely in the
/// ephemeral range).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

pub mod attack_support;
pub mod http_support;
pub mod load_support;
pub mod pool_support;
pub mod release_support;
pub mod reload_support;
pub mod report_support;
pub mod serve;
pub mod systemd_support;
