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

use rustix::process::{Pid, Signal};

use crate::config::Config;
use crate::control::protocol::Versions;
use crate::environ;

use crate::environ::{HANDOVER_ENV, HANDOVER_PID_ENV, PROBE_ENV};

use super::handover::{self, Handover};

/// How long the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

const YES: &str = "littleboss-probe: yes";
const NO: &str = "littleboss-probe: no: ";

/// Runs the binary `exe` as a probe with `handover` on its stdin (blocking: run it off
/// the loop). `Ok` if it says it can take over.
pub(crate) fn probe(exe: BorrowedFd<'_>, handover: &[u8]) -> Result<(), String> {
    if !crate::sys::exec_by_fd() {
        return Err(format!(
            "re-executing the supervisor in place needs to run a binary by its fd, which littleboss does on Linux only, not on {}",
            std::env::consts::OS
        ));
    }
    let stdin = handover::in_memory(handover).map_err(|e| format!("cannot probe it: {e}"))?;
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
        .map_err(|e| format!("cannot run it: {e}"))?;
    let started = Instant::now();
    let exited = loop {
        match child.try_wait() {
            Ok(Some(_)) => break true,
            Ok(None) if started.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => break false,
            // Reaped by someone else (an orphan reaper): what it printed counts.
            Err(_) => break true,
        }
    };
    if !exited {
        if let Some(pid) = Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
        let _ = child.wait();
        return Err(format!(
            "it did not answer the probe within {}s; is it a littleboss program of a release with upgrades?",
            PROBE_TIMEOUT.as_secs()
        ));
    }
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(4096).read_to_string(&mut out);
    }
    let line = out.lines().find(|l| l.starts_with("littleboss-probe: "));
    match line {
        Some(YES) => Ok(()),
        Some(line) => Err(line.strip_prefix(NO).unwrap_or(line).to_string()),
        None => Err(
            "it did not answer the probe: it is not a littleboss program, or of a release without upgrades"
                .to_string(),
        ),
    }
}

/// This binary as the probe: reads the handover on stdin and says whether it can take
/// over the supervisor that wrote it. Returns the exit code.
pub(crate) fn answer_probe(config: &Config) -> u8 {
    let mut bytes = Vec::new();
    let verdict = match std::io::stdin().read_to_end(&mut bytes) {
        Err(e) => Err(format!("cannot read the state: {e}")),
        Ok(_) => Handover::decode(&bytes).and_then(|h| can_take_over(config, &h)),
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
fn can_take_over(config: &Config, handover: &Handover) -> Result<(), String> {
    if handover.state.name != config.name {
        return Err(format!(
            "it is service {:?}, not {:?}",
            config.name, handover.state.name
        ));
    }
    let ours = Versions::ours();
    if ours.common(handover.versions).is_none() {
        return Err(format!(
            "it speaks littleboss protocol {ours}, the running supervisor {}",
            handover.versions
        ));
    }
    for child in &handover.children {
        if let Some(version) = child.version.filter(|v| !ours.contains(*v)) {
            return Err(format!(
                "child pid {} speaks protocol {version}, this binary {ours}",
                child.pid
            ));
        }
    }
    Ok(())
}

/// Re-executes this process as `exe`, with `args` and the environment it started
/// with, plus the handover's fd. Returns only if the exec failed.
///
/// Everything the handover lists must already be inheritable (not close-on-exec).
pub(crate) fn exec(exe: BorrowedFd<'_>, args: &[OsString], handover: BorrowedFd<'_>) -> String {
    let path = match CString::new(format!("/proc/self/fd/{}", exe.as_raw_fd())) {
        Ok(path) => path,
        Err(e) => return e.to_string(),
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
        return "an argument or variable holds a NUL byte".to_string();
    };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: `path`, `argv` and `envp` are NUL-terminated strings that outlive the
    // call, and both arrays end with a null pointer, as execve requires. On success
    // the process image is replaced; on failure nothing has changed.
    unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    std::io::Error::last_os_error().to_string()
}
