//! Starting a child: the executable that was checked, the channel as its one inherited
//! fd, its own process group.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};
use rustix::io::FdFlags;
use rustix::process::Pid;

use crate::channel;
use crate::control::protocol::Versions;
use crate::environ::{self, CHANNEL_ENV, SUPERVISOR_PID_ENV, VERSIONS_ENV};
use crate::socket::describe;
use crate::sys;

use super::script;
use super::user::{self, RunAs};

/// Opens `path` as an executable the supervisor will run: a regular file with an
/// execute bit. The fd (close-on-exec) pins the very file that was checked, so a
/// rebuild or deploy that replaces the path later does not change what runs.
///
/// On Linux the fd is `O_PATH` and the child runs through it. Elsewhere (and under
/// `LITTLEBOSS_PORTABLE=1`) the file is opened for reading and run by its path, and
/// only while the path still holds that file (same device and inode): a child is not
/// started from a file that replaced it.
pub(crate) fn open_executable(path: &Path) -> Result<OwnedFd, ExecutableError> {
    let fd = rustix::fs::open(path, sys::executable_flags(), Mode::empty()).map_err(|e| {
        ExecutableError::Open {
            path: path.to_path_buf(),
            source: e.into(),
        }
    })?;
    checked_executable(fd, path)
}

/// `fd` if it is an executable regular file (`path` is only for messages): what a
/// client passed as itself.
pub(crate) fn checked_executable(fd: OwnedFd, path: &Path) -> Result<OwnedFd, ExecutableError> {
    let path = || path.to_path_buf();
    let stat = rustix::fs::fstat(&fd).map_err(|e| ExecutableError::Stat {
        path: path(),
        source: e.into(),
    })?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(ExecutableError::NotRegular { path: path() });
    }
    if stat.st_mode & 0o111 == 0 {
        return Err(ExecutableError::NotExecutable { path: path() });
    }
    Ok(fd)
}

/// Why a file cannot be the executable the supervisor runs: it cannot be opened or
/// looked at, or it is not an executable regular file. A reload refused for it is the
/// program's failure (its binary), not the supervisor's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecutableError {
    #[error("cannot open {}: {}", .path.display(), describe(.source))]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {}", .path.display(), describe(.source))]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a regular file", .path.display())]
    NotRegular { path: PathBuf },
    #[error("{} is not executable", .path.display())]
    NotExecutable { path: PathBuf },
}

/// A started child: its pid, a pidfd to wait on (where the kernel has them), and the
/// supervisor's end of its channel. Nobody else waits for it: the supervisor reaps it.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub pid: u32,
    pub pidfd: Option<OwnedFd>,
    pub channel: OwnedFd,
}

/// Runs `exe`, opened from `path` (shown as `args[0]`), with `args[1..]` in a new
/// process group, with the child's end of a new channel as its only inherited fd, as
/// `run_as` if given.
///
/// The child's environment is explicit: the supervisor's as it was at start, without
/// the variables meant for littleboss or for the supervisor alone
/// ([`environ::NOT_INHERITED`]), plus `LITTLEBOSS_CHANNEL_FD` (the channel's fd number)
/// and `LITTLEBOSS_SUPERVISOR_PID` (this process, the child's parent).
pub(crate) fn spawn(
    exe: BorrowedFd<'_>,
    path: &Path,
    args: &[OsString],
    run_as: Option<&RunAs>,
) -> io::Result<Spawned> {
    let (ours, theirs) = channel::pair()?;
    let by_path = match sys::exec_by_fd() {
        true => None,
        false => Some(ByPath::new(exe, path)?),
    };
    let mut command = match &by_path {
        // Executing /proc/self/fd/N runs the file the fd refers to, whatever its path
        // now holds (the fd is close-on-exec, but exec resolves the path before closing
        // it; a script keeps it open, see `script`).
        None => std::process::Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd())),
        Some(by_path) => std::process::Command::new(&by_path.program),
    };
    if let Some(arg0) = args.first() {
        command.arg0(arg0);
    }
    command
        .args(args.iter().skip(1))
        .env_clear()
        .envs(environ::inherited())
        .env(CHANNEL_ENV, theirs.as_raw_fd().to_string())
        .env(SUPERVISOR_PID_ENV, std::process::id().to_string())
        .env(VERSIONS_ENV, Versions::ours().to_string())
        .process_group(0);
    if let Some(run_as) = run_as {
        command
            .env("HOME", &run_as.home)
            .env("USER", &run_as.name)
            .env("LOGNAME", &run_as.name);
    }
    let raw = theirs.as_raw_fd();
    let script = script::is_script(exe).then_some(exe.as_raw_fd());
    let run_as = run_as.cloned();
    let check = by_path.as_ref().map(ByPath::check);
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (fcntl, stat, setgroups, setgid, setuid) on data
    // prepared before the fork; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            if let Some(check) = &check {
                check()?;
            }
            // SAFETY: `theirs` stays open in the parent until `spawn` returns, so the
            // child's copy of this fd number is open and is the channel.
            let fd = BorrowedFd::borrow_raw(raw);
            // Clear close-on-exec on the child's copy only: the channel is the one fd
            // the new program inherits.
            rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
            if let Some(exe) = script {
                // SAFETY: `exe` is borrowed for the whole of `spawn`, so the forked
                // copy of this fd number is open and is the executable.
                let exe = BorrowedFd::borrow_raw(exe);
                // A script's interpreter opens /proc/self/fd/N: keep N open for it.
                rustix::io::fcntl_setfd(exe, FdFlags::empty())?;
            }
            if let Some(run_as) = &run_as {
                user::switch(run_as)?;
            }
            Ok(())
        });
    }
    let spawned = {
        // No fd of ours is being made close-on-exec by hand while the child forks.
        let _no_new_fds = sys::spawn_guard();
        command.spawn()
    };
    let process = match spawned {
        Err(e) if e.raw_os_error() == Some(REPLACED) => {
            return Err(replaced(path));
        }
        spawned => spawned?,
    };
    drop(theirs);
    let pid = process.id();
    // Dropping a std `Child` neither kills nor waits for it: the supervisor reaps it
    // itself, after it has killed what is left of its process group.
    drop(process);
    // The child is not reaped yet, so its pid cannot name another process here.
    let pidfd = Pid::from_raw(pid as i32).and_then(sys::pidfd);
    Ok(Spawned {
        pid,
        pidfd,
        channel: ours,
    })
}

/// The errno the check before exec reports when the path holds another file.
const REPLACED: i32 = libc::ESTALE;

fn replaced(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} was replaced since it was opened; on {} a program is run by its path, so the file that was opened cannot be run again",
        path.display(),
        sys::SYSTEM
    ))
}

/// Running the executable by its path, while the path still holds the file the fd
/// pins.
struct ByPath {
    /// The path as `Command` takes it (`./name` for a bare name, so that it is not
    /// looked up in `PATH`).
    program: PathBuf,
    /// The same, for the check in the forked child.
    c_path: CString,
    /// The file the fd pins.
    held: rustix::fs::Stat,
}

impl ByPath {
    /// Checks that `path` holds the file `exe` pins.
    fn new(exe: BorrowedFd<'_>, path: &Path) -> io::Result<ByPath> {
        let program = match path.as_os_str().as_bytes().contains(&b'/') {
            true => path.to_path_buf(),
            false => Path::new(".").join(path),
        };
        let c_path = CString::new(program.as_os_str().as_bytes())
            .map_err(|_| io::Error::other(format!("{} has a NUL byte", path.display())))?;
        let by_path = ByPath {
            program,
            c_path,
            held: rustix::fs::fstat(exe)?,
        };
        if !same_file(&by_path.c_path, &by_path.held)? {
            return Err(replaced(path));
        }
        Ok(by_path)
    }

    /// The check for the forked child, just before exec: the file may have been
    /// replaced since [`new`](Self::new). Fails with [`REPLACED`].
    fn check(&self) -> impl Fn() -> io::Result<()> + Send + Sync + 'static {
        let (c_path, held) = (self.c_path.clone(), self.held);
        move || match same_file(&c_path, &held) {
            Ok(true) => Ok(()),
            Ok(false) => Err(io::Error::from_raw_os_error(REPLACED)),
            Err(e) => Err(e),
        }
    }
}

/// Whether `path` holds the file `held` describes (`stat`, which follows symlinks as
/// exec does; async-signal-safe, and allocates nothing).
fn same_file(path: &CString, held: &rustix::fs::Stat) -> io::Result<bool> {
    let now = rustix::fs::stat(path.as_c_str())?;
    Ok(now.st_dev == held.st_dev && now.st_ino == held.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_cannot_run_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(
            open_executable(&missing).unwrap_err().to_string(),
            format!("cannot open {}: entity not found", missing.display())
        );
        assert_eq!(
            open_executable(dir.path()).unwrap_err().to_string(),
            format!("{} is not a regular file", dir.path().display())
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"data").unwrap();
        assert_eq!(
            open_executable(&plain).unwrap_err().to_string(),
            format!("{} is not executable", plain.display())
        );
    }
}
