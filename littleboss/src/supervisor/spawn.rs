//! Starting a child: the executable by fd, the channel as its one inherited fd, its
//! own process group.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::FdFlags;
use rustix::process::{Pid, PidfdFlags};
use std::os::unix::process::CommandExt;

use crate::channel::{self, CHANNEL_ENV, SUPERVISOR_PID_ENV};
use crate::control::protocol::{VERSIONS_ENV, Versions};
use crate::environ;
use crate::socket::describe;

use super::script;
use super::user::{self, RunAs};

/// Opens `path` as an executable the supervisor will run: a regular file with an
/// execute bit. The fd (`O_PATH`, close-on-exec) pins the very file that was checked,
/// so a rebuild or deploy that replaces the path later does not change what runs.
pub(crate) fn open_executable(path: &Path) -> Result<OwnedFd, String> {
    let shown = path.display();
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("cannot open {shown}: {}", describe(&e.into())))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| format!("{shown}: {}", describe(&e.into())))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(format!("{shown} is not a regular file"));
    }
    if stat.st_mode & 0o111 == 0 {
        return Err(format!("{shown} is not executable"));
    }
    Ok(fd)
}

/// A started child: its pid, a pidfd to wait on (where the kernel has them), and the
/// supervisor's end of its channel. Nobody else waits for it: the supervisor reaps it.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub pid: u32,
    pub pidfd: Option<OwnedFd>,
    pub channel: OwnedFd,
}

/// Runs `exe` (shown as `args[0]`) with `args[1..]` in a new process group, with the
/// child's end of a new channel as its only inherited fd, as `run_as` if given.
///
/// The child's environment is explicit: the supervisor's as it was at start, without
/// the variables meant for littleboss or for the supervisor alone
/// ([`environ::NOT_INHERITED`]), plus `LITTLEBOSS_CHANNEL_FD` (the channel's fd number)
/// and `LITTLEBOSS_SUPERVISOR_PID` (this process, the child's parent).
pub(crate) fn spawn(
    exe: BorrowedFd<'_>,
    args: &[OsString],
    run_as: Option<&RunAs>,
) -> io::Result<Spawned> {
    let (ours, theirs) = channel::pair()?;
    // Executing /proc/self/fd/N runs the file the fd refers to, whatever its path now
    // holds (the fd is close-on-exec, but exec resolves the path before closing it; a
    // script keeps it open, see `script`).
    let mut command = std::process::Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd()));
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
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (fcntl, setgroups, setgid, setuid) on data prepared
    // before the fork; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
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
    let process = command.spawn()?;
    drop(theirs);
    let pid = process.id();
    // Dropping a std `Child` neither kills nor waits for it: the supervisor reaps it
    // itself, after it has killed what is left of its process group.
    drop(process);
    // The child is not reaped yet, so its pid cannot name another process here.
    let pidfd = Pid::from_raw(pid as i32)
        .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).ok());
    Ok(Spawned {
        pid,
        pidfd,
        channel: ours,
    })
}
