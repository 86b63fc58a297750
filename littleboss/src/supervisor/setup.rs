//! What is done before the supervisor's loop starts: the lock that keeps a second
//! supervisor out, the listeners, the executable, the control socket.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};

use crate::config::Config;
use crate::control::client::{self, AskError};
use crate::control::protocol::{Request, Response};
use crate::dir;
use crate::error::Error;
use crate::logger::Level;
use crate::socket::{self, activation::Activated};
use crate::spec::ListenerSpec;
use crate::sys;

use super::fds::FdTable;
use super::spawn;
use super::state::{ListenerRecord, ProgramRecord};
use super::user;

/// The control socket file; removed when dropped (or earlier, by `remove`).
#[derive(Debug)]
pub(crate) struct SocketFile(Option<PathBuf>);

impl SocketFile {
    /// The socket file at `path` (a supervisor's previous image bound it).
    pub(crate) fn at(path: PathBuf) -> SocketFile {
        SocketFile(Some(path))
    }

    /// Where it is, unless it has been removed.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        self.0.clone()
    }

    pub(crate) fn remove(&mut self) {
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
pub(crate) struct Setup {
    pub lock: OwnedFd,
    pub run_as: Option<user::RunAs>,
    pub listeners: Vec<ListenerRecord>,
    pub fds: FdTable,
    pub program: ProgramRecord,
    pub control: std::os::unix::net::UnixListener,
    pub socket: SocketFile,
}

impl Setup {
    pub(crate) fn new(
        config: &Config,
        specs: Vec<(String, ListenerSpec)>,
        activated: Activated,
        args: Vec<OsString>,
    ) -> Result<Setup, Error> {
        crate::sys::raise_fd_limit();
        let run_as = user::resolve(config.user.as_deref(), config.group.as_deref())
            .map_err(Error::config)?;
        let dir = dir::control_dir().map_err(Error::config)?;
        let socket_path = dir::socket_path(&dir, &config.name);
        dir::prepare(&dir).map_err(|source| Error::ControlSocket {
            path: socket_path.clone(),
            source,
        })?;
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
        let not_found = |e| Error::io("cannot find this executable", e);
        let path = std::env::current_exe().map_err(not_found)?;
        let own = sys::own_executable().map_err(not_found)?;
        let exe = spawn::open_executable(&own).map_err(Error::config)?;
        let program = ProgramRecord {
            path,
            args,
            exe: fds.insert(exe),
        };
        let control = bind_control(&socket_path).map_err(|source| Error::ControlSocket {
            path: socket_path.clone(),
            source,
        })?;
        // Before the runtime: a relay of many fds never waits for the table to grow.
        crate::sys::reserve_fd_table(std::os::fd::AsFd::as_fd(&control));
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
fn take_lock(dir: &Path, config: &Config, socket: &Path) -> Result<OwnedFd, Error> {
    let path = dir::lock_path(dir, &config.name);
    let fail = |kind: io::ErrorKind, text: String| Error::ControlSocket {
        path: socket.to_path_buf(),
        source: io::Error::new(kind, text),
    };
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::RUSR | Mode::WUSR,
    )
    .map_err(|e| {
        let text = format!("cannot open {}: {e}", path.display());
        fail(io::Error::from(e).kind(), text)
    })?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let who = match client::ask(socket, &Request::Status) {
                Ok(Response::Status(status)) => format!("supervisor pid {}", status.supervisor_pid),
                Ok(_)
                | Err(AskError::Io(_))
                | Err(AskError::NotRunning(_))
                | Err(AskError::Version(_))
                | Err(AskError::Timeout { .. }) => {
                    format!("its lock {} is held", path.display())
                }
            };
            let flag = &config.flag;
            Err(fail(
                io::ErrorKind::AddrInUse,
                format!(
                    "already running ({who}); stop it with --{flag}=stop or reload it with --{flag}=reload"
                ),
            ))
        }
        Err(e) => Err(fail(
            io::Error::from(e).kind(),
            format!("cannot lock {}: {e}", path.display()),
        )),
    }
}

/// Binds the control socket with mode 0600 from the start (no window in which it is
/// wider), replacing a stale socket. Anything else at the path (a regular file, a
/// symlink) is not ours to delete: it is refused, as unix listeners refuse it.
fn bind_control(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    let shown = path.display();
    let with = |e: &io::Error, text: String| io::Error::new(e.kind(), text);
    match rustix::fs::lstat(path) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Socket => {
            std::fs::remove_file(path)
                .map_err(|e| with(&e, format!("cannot remove stale socket {shown}: {e}")))?;
        }
        Ok(stat) => {
            let what = match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => "a regular file",
                FileType::Directory => "a directory",
                FileType::Symlink => "a symlink",
                _ => "not a socket",
            };
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{shown} exists and is {what}, not a control socket; refusing to delete it (remove it yourself if nothing needs it)"
                ),
            ));
        }
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(with(&e.into(), format!("cannot look at {shown}: {e}"))),
    }
    let old = rustix::process::umask(Mode::from_raw_mode(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(|e| with(&e, format!("cannot bind {}: {e}", path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| with(&e, format!("control socket: {e}")))?;
    Ok(listener)
}
