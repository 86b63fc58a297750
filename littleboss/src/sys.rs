//! What differs between Linux, macOS and FreeBSD, behind small functions, so that the
//! rest of the crate reads the same on every system.
//!
//! Each capability that not every system has is a question here ([`seqpacket`],
//! [`atomic_cloexec`], [`exec_by_fd`], [`pidfds`], [`sealed_memfds`]). The code for
//! both answers is compiled everywhere, and the answer is chosen at run time: Linux
//! takes the fast, exact paths; macOS, and FreeBSD where it lacks a call, take the
//! portable ones. Setting [`PORTABLE_ENV`] makes Linux take the portable paths too, so
//! that the code macOS runs is exercised by the Linux tests rather than only compiled.
//! Only the calls that do not exist on a system at all sit behind `cfg`, in the shims
//! at the end (the memfd calls of state transfer, in `state_transfer/sealed.rs`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustix::fs::{Mode, OFlags};
use rustix::io::FdFlags;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use rustix::process::{Gid, Uid};

/// `LITTLEBOSS_PORTABLE=1`: on Linux, take the paths that macOS takes (a stream socket
/// for the channel, close-on-exec by `fcntl`, executables run by path, exits seen by
/// `SIGCHLD`). Read once, from the environment at start; for tests.
use crate::environ::PORTABLE_ENV;

/// `address in use`, `permission denied`: the short form of an OS error.
pub(crate) fn describe(e: &io::Error) -> String {
    let kind = e.kind().to_string();
    if e.kind() == io::ErrorKind::Other || kind.contains("uncategorized") {
        e.to_string()
    } else {
        kind
    }
}

/// Raises this process's soft limit on open fds to its hard limit, where the hard limit
/// is a number (a supervisor holds every connection on its way between children, and
/// its children inherit the room). Nothing changes if that is refused.
pub(crate) fn raise_fd_limit() {
    let nofile = rustix::process::Resource::Nofile;
    let limit = rustix::process::getrlimit(nofile);
    if let Some(hard) = limit.maximum {
        if limit.current.is_some_and(|soft| soft < hard) {
            let raised = rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            let _ = rustix::process::setrlimit(nofile, raised);
        }
    }
}

/// How many fds a process's table is grown to hold at start (at most its soft limit):
/// a state's 1,024 fds with their duplicates, or the connections of a busy reload.
const FD_TABLE_ROOM: u64 = 4096;

/// Grows this process's table of fds, at start, to hold [`FD_TABLE_ROOM`] fds (or as
/// many as its soft limit allows), by duplicating `fd` to the table's last slot and
/// closing the copy; the table never shrinks.
///
/// Why: Linux grows the table by doubling, and in a process of several threads each
/// growth waits for an RCU grace period (about 10 ms) so that no thread still reads
/// the old table. A process that takes a state's fds or a reload's connections inside
/// its runtime would pay that at every doubling, in the middle of a reload; at start,
/// before the runtime's threads exist, it costs a few microseconds. The table of 4,096
/// slots takes 32 KiB. Nothing changes if the kernel refuses.
pub(crate) fn reserve_fd_table(fd: BorrowedFd<'_>) {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let room = soft.map_or(FD_TABLE_ROOM, |soft| soft.min(FD_TABLE_ROOM));
    let Some(last) = room
        .checked_sub(1)
        .and_then(|last| i32::try_from(last).ok())
    else {
        return;
    };
    if let Ok(copy) = rustix::io::fcntl_dupfd_cloexec(fd, last) {
        drop(copy);
    }
}

/// Asks the kernel for SIGTERM when the parent goes away (`PR_SET_PDEATHSIG` on Linux,
/// `PROC_PDEATHSIG_CTL` on FreeBSD); nothing where the system has no such call (macOS),
/// and the channel's end of file is the only sign.
///
/// On Linux the setting belongs to the calling thread, which must live as long as the
/// process (the thread that runs `main`), and it fires when the parent's thread that
/// forked this process ends: the supervisor forks from its loop's thread, which ends
/// only with the supervisor, and re-executes on it too (an `execve` does not end the
/// calling thread).
pub(crate) fn term_when_parent_dies() -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
    Ok(())
}

/// How many more fds process `pid` can open: its soft limit (`/proc/PID/limits`) less
/// the fds it has open (the size of `/proc/PID/fd`, which Linux gives since 6.2).
/// `None` where that cannot be known: another system, an older kernel, no limit, or a
/// process gone.
pub(crate) fn free_fds(pid: u32) -> Option<u64> {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return None;
    }
    let open = std::fs::metadata(format!("/proc/{pid}/fd")).ok()?.len();
    if open == 0 {
        // Before 6.2 the size says nothing; a live process has some fd open.
        return None;
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let soft = soft_nofile(&limits)?;
    Some(soft.saturating_sub(open))
}

/// The soft limit on open files in the text of `/proc/PID/limits`; `None` if it is
/// unlimited or not there.
fn soft_nofile(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether the number `fd` names an open fd. It asks with the number alone
/// (`fcntl(F_GETFD)`), so no `BorrowedFd` is ever made for a number that may name
/// nothing: the one check before an inherited fd number is owned.
pub(crate) fn is_open(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: F_GETFD takes no pointer and only reads the fd's flags; for a number that
    // names no open fd it fails with EBADF and changes nothing.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// The name of this system, for messages about what it cannot do.
pub(crate) const SYSTEM: &str = std::env::consts::OS;

/// Whether [`PORTABLE_ENV`] is set to `1`.
fn portable_switch() -> bool {
    static SWITCH: OnceLock<bool> = OnceLock::new();
    *SWITCH.get_or_init(|| crate::environ::var(PORTABLE_ENV).is_some_and(|v| v == "1"))
}

/// Whether the channel is a `SOCK_SEQPACKET` pair (Linux, FreeBSD), else a stream
/// pair that frames its messages itself (macOS has no `SOCK_SEQPACKET` for unix
/// sockets).
pub(crate) fn seqpacket() -> bool {
    cfg!(not(target_vendor = "apple")) && !portable_switch()
}

/// Whether new fds can be made close-on-exec by the call that creates them
/// (`SOCK_CLOEXEC`, `MSG_CMSG_CLOEXEC`); macOS has neither.
pub(crate) fn atomic_cloexec() -> bool {
    cfg!(not(target_vendor = "apple")) && !portable_switch()
}

/// Whether a state's bytes travel in a sealed memfd that the receiver maps read-only
/// (Linux, FreeBSD), else in an unlinked file that the receiver reads into memory
/// (macOS, which has no memfds).
pub(crate) fn sealed_memfds() -> bool {
    cfg!(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd"
    )) && !portable_switch()
}

/// Whether a held executable can be run through its fd (`/proc/self/fd/N` of an
/// `O_PATH` fd, Linux), else it is run by path once the path is checked to still be
/// that file.
pub(crate) fn exec_by_fd() -> bool {
    cfg!(target_os = "linux") && !portable_switch()
}

/// Whether a child's exit is waited for on a pidfd (Linux), else on `SIGCHLD`.
pub(crate) fn pidfds() -> bool {
    cfg!(target_os = "linux") && !portable_switch()
}

/// A pidfd for child `pid`, where [`pidfds`] says they are used (and the kernel has
/// them: Linux 5.3 and later).
pub(crate) fn pidfd(pid: rustix::process::Pid) -> Option<OwnedFd> {
    pidfds().then(|| pidfd_open(pid)).flatten()
}

/// The lock between making fds close-on-exec by hand and starting children: an fd
/// made without the flag is marked while a read guard is held, and a child is started
/// under the write guard, so no child is forked while an fd is unmarked.
///
/// It covers the fds littleboss makes (channels, listeners, received fds, the notify
/// socket). Fds that std and tokio make for it on macOS (the control socket and its
/// connections) are marked by those libraries right after they are made, outside it.
static FD_LOCK: RwLock<()> = RwLock::new(());

/// Held while a child is started: no fd of ours is between creation and close-on-exec.
pub(crate) fn spawn_guard() -> RwLockWriteGuard<'static, ()> {
    // The lock guards no data, so a panic elsewhere leaves nothing inconsistent.
    FD_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

/// Fds being made: atomically close-on-exec where the system can, else marked by
/// [`mark`](Self::mark) under the fd lock, which is held from [`begin`](Self::begin)
/// until this is dropped.
#[derive(Debug)]
pub(crate) struct NewFds {
    guard: Option<RwLockReadGuard<'static, ()>>,
}

impl NewFds {
    pub(crate) fn begin() -> NewFds {
        let guard = (!atomic_cloexec()).then(|| FD_LOCK.read().unwrap_or_else(|e| e.into_inner()));
        NewFds { guard }
    }

    /// The flags for `socket`/`socketpair`.
    pub(crate) fn socket_flags(&self) -> SocketFlags {
        match self.guard {
            None => SOCK_CLOEXEC,
            Some(_) => SocketFlags::empty(),
        }
    }

    /// The flags to add to `recvmsg`'s.
    pub(crate) fn recv_flags(&self) -> RecvFlags {
        match self.guard {
            None => MSG_CMSG_CLOEXEC,
            Some(_) => RecvFlags::empty(),
        }
    }

    /// Marks `fd` close-on-exec, unless it was made so.
    pub(crate) fn mark(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if self.guard.is_some() {
            rustix::io::fcntl_setfd(fd, FdFlags::CLOEXEC)?;
        }
        Ok(())
    }
}

/// A new socket, close-on-exec.
pub(crate) fn socket(family: AddressFamily, kind: SocketType) -> io::Result<OwnedFd> {
    let new = NewFds::begin();
    let fd = rustix::net::socket_with(family, kind, new.socket_flags(), None)?;
    new.mark(fd.as_fd())?;
    Ok(fd)
}

/// A new connected pair of unix sockets, both close-on-exec, neither raising `SIGPIPE`.
pub(crate) fn socketpair(kind: SocketType) -> io::Result<(OwnedFd, OwnedFd)> {
    let new = NewFds::begin();
    let (a, b) = rustix::net::socketpair(AddressFamily::UNIX, kind, new.socket_flags(), None)?;
    new.mark(a.as_fd())?;
    new.mark(b.as_fd())?;
    no_sigpipe(a.as_fd())?;
    no_sigpipe(b.as_fd())?;
    Ok((a, b))
}

/// How `open` pins an executable: `O_PATH` where it exists (no read permission needed),
/// else for reading; close-on-exec.
pub(crate) fn executable_flags() -> OFlags {
    if exec_by_fd() {
        OPEN_PATH | OFlags::CLOEXEC
    } else {
        OFlags::RDONLY | OFlags::CLOEXEC
    }
}

/// Where this process's own executable is opened from: `/proc/self/exe` on Linux (the
/// very file, even if its path was replaced), else the path it was started from.
pub(crate) fn own_executable() -> io::Result<PathBuf> {
    if exec_by_fd() {
        Ok(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    }
}

/// The family of socket `fd`.
pub(crate) fn socket_family(fd: BorrowedFd<'_>) -> io::Result<AddressFamily> {
    socket_family_of(fd)
}

/// A stat's mode as a `u32`, whatever the width of the system's `mode_t` (16 bits on
/// macOS and FreeBSD).
#[allow(clippy::useless_conversion)]
pub(crate) fn mode_bits(mode: rustix::fs::RawMode) -> u32 {
    u32::from(mode)
}

/// A permission mode as the system's `mode_t`.
pub(crate) fn mode(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode_t(mode))
}

// The shims: one definition for each system, each as small as it can be.

#[cfg(not(target_vendor = "apple"))]
const SOCK_CLOEXEC: SocketFlags = SocketFlags::CLOEXEC;
#[cfg(target_vendor = "apple")]
const SOCK_CLOEXEC: SocketFlags = SocketFlags::empty();

#[cfg(not(target_vendor = "apple"))]
const MSG_CMSG_CLOEXEC: RecvFlags = RecvFlags::CMSG_CLOEXEC;
#[cfg(target_vendor = "apple")]
const MSG_CMSG_CLOEXEC: RecvFlags = RecvFlags::empty();

/// `MSG_NOSIGNAL` where `send` takes it; macOS sets `SO_NOSIGPIPE` on the socket
/// instead ([`socketpair`]).
#[cfg(not(target_vendor = "apple"))]
pub(crate) const SEND_NOSIGNAL: SendFlags = SendFlags::NOSIGNAL;
#[cfg(target_vendor = "apple")]
pub(crate) const SEND_NOSIGNAL: SendFlags = SendFlags::empty();

#[cfg(target_vendor = "apple")]
fn no_sigpipe(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_nosigpipe(fd, true)?)
}
#[cfg(not(target_vendor = "apple"))]
fn no_sigpipe(_fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(())
}

/// `ENONET` (the machine is not on the network), which Linux alone has.
#[cfg(all(feature = "hyper", any(target_os = "linux", target_os = "android")))]
pub(crate) const ENONET: Option<rustix::io::Errno> = Some(rustix::io::Errno::NONET);
#[cfg(all(
    feature = "hyper",
    not(any(target_os = "linux", target_os = "android"))
))]
pub(crate) const ENONET: Option<rustix::io::Errno> = None;

#[cfg(target_os = "linux")]
const OPEN_PATH: OFlags = OFlags::PATH;
#[cfg(not(target_os = "linux"))]
const OPEN_PATH: OFlags = OFlags::RDONLY;

#[cfg(not(target_vendor = "apple"))]
fn socket_family_of(fd: BorrowedFd<'_>) -> io::Result<AddressFamily> {
    Ok(rustix::net::sockopt::socket_domain(fd)?)
}
/// macOS has no `SO_DOMAIN`; a unix socket's own address, even an unnamed one, has
/// the family.
#[cfg(target_vendor = "apple")]
fn socket_family_of(fd: BorrowedFd<'_>) -> io::Result<AddressFamily> {
    Ok(rustix::net::getsockname(fd)?.address_family())
}

/// Whether socket `fd` listens (`SO_ACCEPTCONN`); `None` where the system cannot tell
/// (macOS declares the option but does not answer it).
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn is_listening(fd: BorrowedFd<'_>) -> io::Result<Option<bool>> {
    Ok(Some(rustix::net::sockopt::socket_acceptconn(fd)?))
}
#[cfg(target_vendor = "apple")]
pub(crate) fn is_listening(_fd: BorrowedFd<'_>) -> io::Result<Option<bool>> {
    Ok(None)
}

/// The unix address `@name` in the abstract namespace, where there is one (Linux).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn abstract_address(name: &str) -> Result<SocketAddrUnix, AbstractError> {
    SocketAddrUnix::new_abstract_name(name.as_bytes()).map_err(|e| AbstractError::Invalid(e.into()))
}
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn abstract_address(name: &str) -> Result<SocketAddrUnix, AbstractError> {
    Err(AbstractError::Unsupported {
        name: name.to_string(),
    })
}

/// Why there is no abstract unix address for a name: the system refused the name, or
/// it has no abstract namespace at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AbstractError {
    /// The name is not one the system takes (too long).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[error("{}", describe(.0))]
    Invalid(#[source] io::Error),
    /// The system has no abstract namespace.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    #[error("abstract unix socket names (@{name}) exist on Linux only, not on {SYSTEM}")]
    Unsupported { name: String },
}

/// `@name` of a unix address in the abstract namespace.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn abstract_name(addr: &SocketAddrUnix) -> Option<String> {
    addr.abstract_name()
        .map(|n| format!("@{}", String::from_utf8_lossy(n)))
}
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn abstract_name(_addr: &SocketAddrUnix) -> Option<String> {
    None
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn mode_t(mode: u32) -> rustix::fs::RawMode {
    mode
}
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn mode_t(mode: u32) -> rustix::fs::RawMode {
    // Permission bits fit 16 bits; anything above them is not a permission.
    (mode & 0o7777) as rustix::fs::RawMode
}

#[cfg(target_os = "linux")]
fn pidfd_open(pid: rustix::process::Pid) -> Option<OwnedFd> {
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}
#[cfg(not(target_os = "linux"))]
fn pidfd_open(_pid: rustix::process::Pid) -> Option<OwnedFd> {
    None
}

/// In a forked child, before exec: supplementary groups, then the group, then the user
/// (after `setuid` the others are no longer allowed). Only async-signal-safe system
/// calls on data prepared before the fork.
///
/// On Linux the raw system calls, which change this thread only: the forked child has
/// one thread, and libc's wrappers would try to reach threads it no longer has.
#[cfg(target_os = "linux")]
pub(crate) fn switch_user(groups: &[Gid], gid: Gid, uid: Uid) -> io::Result<()> {
    rustix::thread::set_thread_groups(groups)?;
    rustix::thread::set_thread_gid(gid)?;
    rustix::thread::set_thread_uid(uid)?;
    Ok(())
}
/// Elsewhere the calls are process-wide system calls.
#[cfg(not(target_os = "linux"))]
pub(crate) fn switch_user(groups: &[Gid], gid: Gid, uid: Uid) -> io::Result<()> {
    // `Gid` is a transparent wrapper of `gid_t` (rustix documents the layout), so a
    // slice of them is a valid array of `gid_t`.
    let raw = groups.as_ptr().cast::<libc::gid_t>();
    let count = groups.len() as _;
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: `raw` points to `groups.len()` valid `gid_t`s (see above), which the call
    // only reads; setgid and setuid take plain integers.
    unsafe {
        check(libc::setgroups(count, raw))?;
        check(libc::setgid(gid.as_raw()))?;
        check(libc::setuid(uid.as_raw()))
    }
}

/// The pid of the process that created or connected the other end of unix socket `fd`;
/// 0 when there is none (or, on Linux, it is outside this pid namespace).
///
/// `SO_PEERCRED` on Linux (rustix's `socket_peercred` returns a non-zero `Pid`, which a
/// 0 from the kernel would break).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_pid(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `len` is the size of `ucred`, three integers, valid for any bytes.
    unsafe { getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred, &mut len) }?;
    Ok(cred.pid)
}
/// `LOCAL_PEERPID` on macOS.
#[cfg(target_vendor = "apple")]
pub(crate) fn peer_pid(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut pid: libc::pid_t = 0;
    let mut len = std::mem::size_of::<libc::pid_t>() as libc::socklen_t;
    // SAFETY: `len` is the size of `pid_t`, an integer, valid for any bytes.
    unsafe { getsockopt(fd, libc::SOL_LOCAL, libc::LOCAL_PEERPID, &mut pid, &mut len) }?;
    Ok(pid)
}
/// `LOCAL_PEERCRED` on FreeBSD: its `xucred` carries the pid (FreeBSD 13 and later;
/// older ones leave it 0).
#[cfg(target_os = "freebsd")]
pub(crate) fn peer_pid(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: `xucred` is plain integers and a union of a pointer and an integer; all
    // zeros is a valid value of each.
    let mut cred: libc::xucred = unsafe { std::mem::zeroed() };
    cred.cr_version = libc::XUCRED_VERSION;
    let mut len = std::mem::size_of::<libc::xucred>() as libc::socklen_t;
    // SAFETY: `len` is the size of `xucred`, integers and a union of a pointer and an
    // integer, valid for any bytes the kernel writes.
    unsafe {
        getsockopt(
            fd,
            libc::SOL_LOCAL,
            libc::LOCAL_PEERCRED,
            &mut cred,
            &mut len,
        )
    }?;
    // SAFETY: the kernel filled in the pid member of the union (or left the zeros).
    Ok(unsafe { cred.cr_pid__c_anonymous_union.cr_pid })
}

/// `getsockopt(fd, level, name)` into `value`, of `*len` bytes.
///
/// # Safety
///
/// `*len` must be at most the size of `T`, and every bit pattern must be a valid `T`
/// (plain integers, or structs and unions of them): the kernel writes whatever bytes
/// the option has.
unsafe fn getsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &mut T,
    len: &mut libc::socklen_t,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `value` and `len` are valid for writes, the kernel writes at most `*len`
    // bytes there, which fit `T` and make a valid `T` (the caller's promise); `fd` is
    // open for the duration of the call.
    let rc =
        unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (value as *mut T).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_on_open_files_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_nofile(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_nofile(unlimited), None);
        assert_eq!(soft_nofile(""), None);
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_process_has_less_room_once_it_opens_fds() {
        let Some(before) = free_fds(std::process::id()) else {
            println!("skipped: this kernel does not count a process's fds in /proc (before 6.2)");
            return;
        };
        let files: Vec<std::fs::File> = (0..200).map(|_| tempfile::tempfile().unwrap()).collect();
        let after = free_fds(std::process::id()).expect("still known");
        // Other tests open and close fds meanwhile: about 200 less.
        assert!(after + 150 <= before, "{before} -> {after}");
        drop(files);
    }
}
