//! No process of the service outlives it. A child's process group is killed when the
//! child ends, but a descendant that left the group (a daemonizing library's
//! `setsid()`, a shell pipeline) would survive it, keep the listening socket and the
//! port. So the supervisor is a child subreaper: such descendants are reparented to it
//! rather than to init, it reaps them when they exit ([`reap`](super::reap)), and at
//! stop, once its children are gone, it ends those still running ([`end_all`]).

use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::time::Instant;

use super::reap;

/// How long descendants have to die after SIGKILL before they count as not ended.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// How often the descendants are looked at while they are ended.
const POLL: Duration = Duration::from_millis(20);

/// Makes this process the subreaper of its descendants: orphans are reparented to it.
/// Linux only; elsewhere there is no such attribute, and nothing is done.
pub(crate) fn become_subreaper() -> Result<(), SubreaperError> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| SubreaperError(e.into()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(())
    }
}

/// The supervisor could not become the subreaper: descendants that leave the child's
/// process group would outlive the service. Worth a warning, not a stop.
#[derive(Debug, thiserror::Error)]
#[error("cannot become the subreaper of the service's processes: {0}")]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct SubreaperError(#[source] std::io::Error);

/// Ends the processes left of the service once the supervisor's own children are gone
/// (they are its children now, as their parents exited): SIGTERM, up to `grace` to
/// exit, then SIGKILL, and each is reaped. The error names the processes that could not
/// be ended (another user's, as a set-user-ID program run by the service). `log` says
/// what is done.
pub(crate) async fn end_all(grace: Duration, log: impl Fn(&str)) -> Result<(), EndError> {
    reap::reap_orphans(&[]);
    let left = reap::children();
    if left.is_empty() {
        return Ok(());
    }
    log(&format!(
        "{} left of the service after its children ended; ending {}",
        processes(&left),
        if left.len() == 1 { "it" } else { "them" }
    ));
    let mut refused = Refused::default();
    for pid in &left {
        refused.note(*pid, signal(*pid, Signal::TERM));
    }
    if wait_gone(grace, |_| {}).await {
        return Ok(());
    }
    let mut killed = Vec::new();
    let gone = wait_gone(KILL_WAIT, |pids| {
        // Every round: processes reparented meanwhile (children of those that died)
        // are killed as soon as they are seen.
        for pid in pids {
            if !killed.contains(pid) {
                killed.push(*pid);
                refused.note(*pid, signal(*pid, Signal::KILL));
            }
        }
    })
    .await;
    if gone {
        return Ok(());
    }
    let left = reap::children();
    Err(refused.error(&left))
}

/// Reaps and looks until no child is left (true) or `limit` has passed (false); `each`
/// sees the children left at every round.
async fn wait_gone(limit: Duration, mut each: impl FnMut(&[u32])) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        reap::reap_orphans(&[]);
        let left = reap::children();
        if left.is_empty() {
            return true;
        }
        each(&left);
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends `signal` to process `pid` and to the process group it leads, if it leads one.
fn signal(pid: u32, signal: Signal) -> rustix::io::Result<()> {
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return Ok(());
    };
    let _ = rustix::process::kill_process_group(pid, signal);
    rustix::process::kill_process(pid, signal)
}

/// The processes a signal could not reach, and why.
#[derive(Debug, Default)]
struct Refused(Vec<(u32, rustix::io::Errno)>);

impl Refused {
    fn note(&mut self, pid: u32, sent: rustix::io::Result<()>) {
        match sent {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => self.0.push((pid, e)),
        }
    }

    /// The processes of `left` (those still there), each with its owner and why it
    /// was not ended.
    fn error(&self, left: &[u32]) -> EndError {
        let left = left
            .iter()
            .map(|&pid| Left {
                pid,
                uid: owner(pid),
                refused: self.0.iter().find(|(p, _)| *p == pid).map(|(_, e)| *e),
            })
            .collect();
        EndError { left }
    }
}

/// Processes of the service that outlived it: `cannot end pid 123 (uid 0): permission
/// denied; ...; left running`. The supervisor exits non-zero for them.
#[derive(Debug, thiserror::Error)]
#[error("cannot end {} of the service: {}; left running", processes(&pids(.left)), shown(.left))]
pub(crate) struct EndError {
    left: Vec<Left>,
}

/// A process left running: its real uid where it can be read, and the error its signal
/// met (`None`: it was sent, and the process did not exit).
#[derive(Debug)]
struct Left {
    pid: u32,
    uid: Option<u32>,
    refused: Option<rustix::io::Errno>,
}

fn pids(left: &[Left]) -> Vec<u32> {
    left.iter().map(|l| l.pid).collect()
}

/// `pid 123 (uid 0): permission denied; pid 124: it did not exit after SIGKILL`.
fn shown(left: &[Left]) -> String {
    let shown: Vec<String> = left
        .iter()
        .map(|l| {
            let why = l.refused.map_or_else(
                || "it did not exit after SIGKILL".to_string(),
                |e| std::io::Error::from(e).kind().to_string(),
            );
            match l.uid {
                Some(uid) => format!("pid {} (uid {uid}): {why}", l.pid),
                None => format!("pid {}: {why}", l.pid),
            }
        })
        .collect();
    shown.join("; ")
}

/// `1 process (pid 12)`, `2 processes (pids 12, 13)`.
fn processes(pids: &[u32]) -> String {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    match pids {
        [pid] => format!("1 process (pid {pid})"),
        _ => format!("{} processes (pids {})", pids.len(), list.join(", ")),
    }
}

/// The real uid of process `pid`, from `/proc/PID/status`.
fn owner(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_processes() {
        assert_eq!(processes(&[12]), "1 process (pid 12)");
        assert_eq!(processes(&[12, 13]), "2 processes (pids 12, 13)");
        let mut refused = Refused::default();
        refused.note(4_000_000, Err(rustix::io::Errno::PERM));
        refused.note(4_000_001, Err(rustix::io::Errno::SRCH));
        refused.note(4_000_002, Ok(()));
        let error = refused.error(&[4_000_000, 4_000_002]);
        assert_eq!(
            error.to_string(),
            "cannot end 2 processes (pids 4000000, 4000002) of the service: pid 4000000: permission denied; pid 4000002: it did not exit after SIGKILL; left running"
        );
    }
}
