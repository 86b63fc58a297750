//! The supervisor's own upgrade: asking the new binary whether it can take over (the
//! probe), and re-executing as it.
//!
//! The probe is a run of the new binary with [`PROBE_ENV`](crate::environ::PROBE_ENV) set and the handover on
//! its stdin: whatever the program names its flags, and however its parser hands
//! littleboss the mode, `run` sees the variable first, reads the handover as its own
//! build would, and prints one line: `littleboss-probe: yes`, or
//! `littleboss-probe: no: WHY`. A binary that is not a littleboss program (or is of a
//! release without upgrades) prints no such line, and is refused.

use std::ffi::{CString, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::config::Config;
use crate::control::protocol::Versions;
use crate::environ;

use crate::environ::{HANDOVER_ENV, HANDOVER_PID_ENV, PROBE_ENV};

use super::handover::{self, Handover, HandoverError};

/// How long the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

const YES: &str = "littleboss-probe: yes";
const NO: &str = "littleboss-probe: no: ";

/// Runs the binary `exe` as a probe with `handover` on its stdin (blocking: run it off
/// the loop). `Ok` if it says it can take over.
pub(crate) fn probe(exe: BorrowedFd<'_>, handover: &[u8]) -> Result<(), ProbeError> {
    if !crate::sys::exec_by_fd() {
        return Err(ProbeError::NoExecByFd);
    }
    if is_script(exe) {
        return Err(ProbeError::Script);
    }
    let stdin = handover::in_memory(handover).map_err(ProbeError::Handover)?;
    let mut child = std::process::Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd()))
        .env_clear()
        .envs(environ::inherited())
        .envs(environ::test_hooks_set())
        .env(PROBE_ENV, "1")
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(ProbeError::Run)?;
    let Some(pid) = Pid::from_raw(child.id() as i32) else {
        return Err(ProbeError::NoAnswer);
    };
    // Until the probe exits, not until its stdout closes: a process it left behind
    // may hold that open for as long as it lives.
    let started = Instant::now();
    let exited = loop {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        match rustix::process::waitid(WaitId::Pid(pid), options) {
            Ok(Some(_)) => break true,
            Ok(None) if started.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => break false,
            // Reaped by someone else (an orphan reaper): what it printed counts.
            Err(_) => break true,
        }
    };
    // Whatever it left in its process group goes with it, while its pid (the group's
    // id) cannot be reused: it is not reaped yet.
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    let _ = child.wait();
    if !exited {
        return Err(ProbeError::TimedOut(PROBE_TIMEOUT));
    }
    // What it printed is in the pipe already: read without waiting for the pipe to
    // close, which a process that left the group could keep open.
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = rustix::io::ioctl_fionbio(&stdout, true);
        let _ = stdout.take(4096).read_to_string(&mut out);
    }
    let line = out.lines().find(|l| l.starts_with("littleboss-probe: "));
    match line {
        Some(YES) => Ok(()),
        Some(line) => Err(ProbeError::No(
            line.strip_prefix(NO).unwrap_or(line).to_string(),
        )),
        None => Err(ProbeError::NoAnswer),
    }
}

/// Whether the file `exe` (an fd that may be open for exec only) starts with `#!`.
fn is_script(exe: BorrowedFd<'_>) -> bool {
    let path = format!("/proc/self/fd/{}", exe.as_raw_fd());
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"#!")
}

/// Why the new binary cannot take over, as the upgrade's refusal says it: the probe
/// could not run, or the binary said no (in its own words), or nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// This system cannot run a binary by its fd.
    #[error(
        "re-executing the supervisor in place needs to run a binary by its fd, which littleboss does on Linux only, not on {}",
        crate::sys::SYSTEM
    )]
    NoExecByFd,
    /// It is a script: it may run as a child, but cannot be the supervisor.
    #[error(
        "it is a script (it starts with #!): the supervisor re-executes itself as a littleboss program's binary, which a script is not; reload to the script instead, or upgrade to the binary it runs"
    )]
    Script,
    /// The handover could not be put where the probe reads it.
    #[error("cannot probe it: {0}")]
    Handover(#[source] std::io::Error),
    /// The binary could not be started.
    #[error("cannot run it: {0}")]
    Run(#[source] std::io::Error),
    /// It said nothing within the time given.
    #[error(
        "it did not answer the probe within {}s; is it a littleboss program of a release with upgrades?",
        .0.as_secs()
    )]
    TimedOut(Duration),
    /// It said no, and why.
    #[error("{0}")]
    No(String),
    /// It exited without the probe's line.
    #[error(
        "it did not answer the probe: it is not a littleboss program, or of a release without upgrades"
    )]
    NoAnswer,
}

/// This binary as the probe: reads the handover on stdin and says whether it can take
/// over the supervisor that wrote it. Returns the exit code.
pub(crate) fn answer_probe(config: &Config) -> u8 {
    let mut bytes = Vec::new();
    let verdict = match std::io::stdin().read_to_end(&mut bytes) {
        Err(e) => Err(TakeOverError::Read(e)),
        Ok(_) => Handover::decode(&bytes)
            .map_err(TakeOverError::from)
            .and_then(|h| can_take_over(config, &h)),
    };
    let mut stdout = std::io::stdout();
    let (line, code) = match verdict {
        Ok(()) => (YES.to_string(), 0),
        Err(why) => (format!("{NO}{why}"), 1),
    };
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
    code
}

/// Whether this build can run the supervisor that wrote `handover`.
fn can_take_over(config: &Config, handover: &Handover) -> Result<(), TakeOverError> {
    if handover.state.name != config.name {
        return Err(TakeOverError::OtherService {
            ours: config.name.clone(),
            running: handover.state.name.clone(),
        });
    }
    let ours = Versions::ours();
    if ours.common(handover.versions).is_none() {
        return Err(TakeOverError::NoCommonProtocol {
            ours,
            running: handover.versions,
        });
    }
    for child in &handover.children {
        if let Some(version) = child.version.filter(|v| !ours.contains(*v)) {
            return Err(TakeOverError::ChildProtocol {
                pid: child.pid,
                version,
                ours,
            });
        }
    }
    Ok(())
}

/// Why this build, as the probe, cannot take over the running supervisor: the probe's
/// `no` and the reason after it.
#[derive(Debug, thiserror::Error)]
enum TakeOverError {
    /// The handover could not be read from stdin.
    #[error("cannot read the state: {0}")]
    Read(#[source] std::io::Error),
    /// It is not a handover this build reads.
    #[error(transparent)]
    Handover(#[from] HandoverError),
    /// This build is another service.
    #[error("it is service {ours:?}, not {running:?}")]
    OtherService { ours: String, running: String },
    /// This build and the running supervisor share no protocol version.
    #[error("it speaks littleboss protocol {ours}, the running supervisor {running}")]
    NoCommonProtocol { ours: Versions, running: Versions },
    /// A running child speaks a version this build does not.
    #[error("child pid {pid} speaks protocol {version}, this binary {ours}")]
    ChildProtocol {
        pid: u32,
        version: u16,
        ours: Versions,
    },
}

/// Re-executes this process as `exe`, with `args` and the environment it started
/// with, plus the handover's fd. Returns only if the exec failed, with why.
///
/// Everything the handover lists must already be inheritable (not close-on-exec).
pub(crate) fn exec(
    exe: BorrowedFd<'_>,
    args: &[OsString],
    handover: BorrowedFd<'_>,
) -> std::io::Error {
    let nul = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an argument or variable holds a NUL byte",
        )
    };
    let Ok(path) = CString::new(format!("/proc/self/fd/{}", exe.as_raw_fd())) else {
        return nul();
    };
    let to_c = |bytes: &[u8]| CString::new(bytes).ok();
    let argv: Option<Vec<CString>> = args.iter().map(|a| to_c(a.as_bytes())).collect();
    let mut envp: Option<Vec<CString>> = environ::at_start()
        .iter()
        .filter(|(k, _)| k != HANDOVER_ENV && k != HANDOVER_PID_ENV)
        .map(|(k, v)| to_c(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect();
    if let Some(envp) = envp.as_mut() {
        envp.extend(to_c(
            format!("{HANDOVER_ENV}={}", handover.as_raw_fd()).as_bytes(),
        ));
        envp.extend(to_c(
            format!("{HANDOVER_PID_ENV}={}", std::process::id()).as_bytes(),
        ));
    }
    let (Some(argv), Some(envp)) = (argv, envp) else {
        return nul();
    };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: `path`, `argv` and `envp` are NUL-terminated strings that outlive the
    // call, and both arrays end with a null pointer, as execve requires. On success
    // the process image is replaced; on failure nothing has changed.
    unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    std::io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_the_probe_says_them() {
        assert_eq!(
            ProbeError::TimedOut(PROBE_TIMEOUT).to_string(),
            "it did not answer the probe within 10s; is it a littleboss program of a release with upgrades?"
        );
        assert_eq!(
            ProbeError::No("it is service \"a\", not \"b\"".into()).to_string(),
            "it is service \"a\", not \"b\""
        );
        let other = TakeOverError::OtherService {
            ours: "a".into(),
            running: "b".into(),
        };
        assert_eq!(other.to_string(), "it is service \"a\", not \"b\"");
        let ours = Versions::ours();
        let child = TakeOverError::ChildProtocol {
            pid: 7,
            version: 99,
            ours,
        };
        assert_eq!(
            child.to_string(),
            format!("child pid 7 speaks protocol 99, this binary {ours}")
        );
        let cut = TakeOverError::from(HandoverError::CutShort);
        assert_eq!(cut.to_string(), "the handover is cut short");
    }
}
