//! As PID 1 (a container's entrypoint), the supervisor also reaps the orphans the
//! kernel reparents to it, as an init such as tini does. Its own children are left to
//! the one task that waits for each of them.

use rustix::process::{Pid, WaitOptions};

/// Whether this process is PID 1 of its namespace.
pub(crate) fn is_init() -> bool {
    std::process::id() == 1
}

/// Reaps every exited child of this process that is not in `ours`.
///
/// The children are read from `/proc/self/task/*/children` and each is waited for by
/// pid with `WNOHANG`, so the supervisor's own children, and children still running,
/// are never touched.
pub(crate) fn reap_orphans(ours: &[u32]) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut reaped = 0;
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
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
    }
    reaped
}
