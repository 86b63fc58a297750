//! The supervisor is a child subreaper ([`descendants`](super::descendants)), and as
//! PID 1 (a container's entrypoint) an init: orphans of the service are reparented to
//! it, and it reaps those that exit, as an init such as tini does. Its own children are
//! left to the one task that waits for each of them, which must see their exit status.

use rustix::process::{Pid, WaitId, WaitIdOptions, WaitOptions};

/// Reaps every exited child of this process that is not in `ours`, and returns how
/// many it reaped.
///
/// It first looks, without reaping (`waitid(P_ALL, WNOWAIT)`), at which child has
/// exited: one not in `ours` is reaped by its pid, and the next one looked at. Once the
/// exited child it sees is one of `ours` (whose status its task must still read), the
/// others are found in `/proc/self/task/*/children` and each waited for by pid with
/// `WNOHANG`: so a child of `ours`, or a child still running, is never reaped here.
pub(crate) fn reap_orphans(ours: &[u32]) -> usize {
    let mut reaped = 0;
    while let Some(pid) = exited_child() {
        if ours.contains(&pid) {
            return reaped + reap_listed(ours);
        }
        if reap_pid(pid) {
            reaped += 1;
        } else {
            break;
        }
    }
    reaped
}

/// The pid of a child that has exited and is not reaped yet, leaving it so.
fn exited_child() -> Option<u32> {
    // SAFETY: an all-zero `siginfo_t` is a valid value of the plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let options = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a valid, writable `siginfo_t` for the duration of the call.
    let done = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, options) };
    if done != 0 {
        return None;
    }
    // SAFETY: waitid filled `info` for a child event (or left it zeroed when no child
    // has exited, with WNOHANG); both make `si_pid` the field to read.
    let pid = unsafe { info.si_pid() };
    u32::try_from(pid).ok().filter(|pid| *pid != 0)
}

/// Reaps child `pid` if it has exited.
fn reap_pid(pid: u32) -> bool {
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return false;
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    matches!(
        rustix::process::waitid(WaitId::Pid(pid), options),
        Ok(Some(_))
    )
}

/// Reaps each exited child in `/proc/self/task/*/children` that is not in `ours`.
fn reap_listed(ours: &[u32]) -> usize {
    let mut reaped = 0;
    for pid in children() {
        if ours.contains(&pid) {
            continue;
        }
        let Some(pid) = Pid::from_raw(pid as i32) else {
            continue;
        };
        if let Ok(Some(_)) = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            reaped += 1;
        }
    }
    reaped
}

/// The children of this process, running or exited, from `/proc/self/task/*/children`.
pub(crate) fn children() -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return children;
    };
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        children.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    children.sort_unstable();
    children.dedup();
    children
}
