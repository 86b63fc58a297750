//! The command-line modes that talk to a running supervisor: `stop`, `status`,
//! `status-json`, `reload`, `upgrade`, `promote`, `rollback`, `history`,
//! `history-json`, `metrics`. What they print is here; the talking is
//! [`control::client`](crate::control::client).

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

use littleboss_rules::wait::until_ready;

use crate::config::Config;
use crate::control::client::{AskError, ask_with};
use crate::control::protocol::{self, ReloadRequest, Request, Response, Status, Upgraded, Waits};
use crate::dir;
use crate::error::{Error, Failed};
use crate::flags::{Command, Flags};
use crate::output::{out, outln};

/// `PROGRAM --littleboss=start`: how to start a supervisor of this program, as it was
/// run (its `argv[0]`).
fn start_command(config: &Config) -> String {
    let program = std::env::args_os()
        .next()
        .map_or_else(|| config.name.clone(), |p| p.to_string_lossy().into_owned());
    format!("{program} --{}=start", config.flag)
}

/// Runs a client command: its exit code, or the failure to print (or return, from
/// `try_run`). What it reports on success is printed here.
pub(crate) fn run(config: &Config, flags: &Flags) -> Result<ExitCode, Failed> {
    let name = &config.name;
    let fail = |error: Error, line: String| Err(Failed::new(error, line, 1));
    let dir = match dir::control_dir() {
        Ok(dir) => dir,
        Err(e) => return fail(Error::config(&e), format!("littleboss: {e}")),
    };
    let path = dir::socket_path(&dir, name);
    let request = match flags.command {
        Command::Status | Command::StatusJson => Request::Status,
        Command::Stop => Request::Stop,
        Command::Promote => Request::Promote,
        Command::Rollback => Request::Rollback,
        Command::History | Command::HistoryJson => Request::History,
        Command::Metrics => Request::Metrics,
        Command::Reload | Command::Upgrade => {
            let upgrade = flags.command == Command::Upgrade;
            match reload_request(flags) {
                Ok(request) if upgrade => Request::Upgrade(request),
                Ok(request) => Request::Reload(request),
                Err(e) => {
                    let what = if upgrade { "upgrade" } else { "reload" };
                    let line = format!("{what} of {name} failed: {e}");
                    return fail(Error::io("finding this executable", e), line);
                }
            }
        }
        Command::Bypass | Command::Start | Command::Dev => return Ok(ExitCode::FAILURE),
    };
    if dir.exists() {
        if let Err(e) = dir::check(&dir) {
            let line = format!("littleboss: {e}");
            return fail(Error::ControlSocket { path, source: e }, line);
        }
    }
    // What the command is doing, once a supervisor has answered: with none, only the
    // error is printed.
    let contacted = || match flags.command {
        Command::Stop => outln!("stopping {name}"),
        Command::Reload => outln!("reloading {name}"),
        Command::Upgrade => outln!("upgrading {name}: reloading the child, then the supervisor"),
        _ => {}
    };
    // A reload or an upgrade runs this very binary: its fd goes with the request
    // (where the supervisor takes one), so that a binary deleted or replaced since it
    // started is still the one that runs; its path is only shown.
    let exe = match flags.command {
        Command::Reload | Command::Upgrade => own_executable(),
        _ => None,
    };
    let own = Waits {
        lameduck: config.lameduck,
        ready: until_ready(config.calls_ready, config.settle, config.ready_timeout),
        probation: config.probation,
    };
    let exe_fd = exe.as_ref().map(|fd| fd.as_fd());
    // A reload on probation is said as soon as the new child is ready; the verdict
    // follows.
    let mut on_probation = false;
    let interim = |response: &Response| {
        if let Response::OnProbation {
            old_pid,
            new_pid,
            ms,
            ends_ms,
        } = response
        {
            on_probation = true;
            let old = old_pid.map_or_else(|| "none".to_string(), |p| p.to_string());
            let what = match flags.command {
                Command::Upgrade => format!("upgrading {name}: child"),
                _ => format!("reloaded {name}:"),
            };
            let probation = protocol::seconds(*ends_ms);
            outln!("{what} pid {old} -> {new_pid} in {ms} ms; on probation for {probation}");
        }
    };
    let response = match ask_with(&path, &request, exe_fd, &own, contacted, interim) {
        Ok(response) => response,
        Err(AskError::NotRunning(why)) => {
            let line = format!("{name}: no supervisor running ({why})");
            let more = format!("{name}: start one with: {}\n", start_command(config));
            let error = Error::ControlSocket { path, source: why };
            return Err(Failed::new(error, line, 1).with_more(more));
        }
        Err(AskError::Timeout { within, waiting }) => {
            let error = Error::Timeout {
                operation: waiting.to_string(),
                within,
            };
            let line = format!("{name}: {error}");
            return fail(error, line);
        }
        Err(AskError::Version(error)) => {
            let line = match flags.command {
                Command::Upgrade => format!("upgrade of {name} failed: {error}"),
                _ => format!("{name}: {error}"),
            };
            return fail(error, line);
        }
        Err(AskError::Io(e)) => {
            let error = Error::io(
                format!("talking to the supervisor at {}", path.display()),
                e,
            );
            let line = format!("{name}: {error}");
            return fail(error, line);
        }
    };
    let refused = |what: &str, reason: String| {
        let line = format!("{what}{reason}");
        fail(Error::Refused { reason }, line)
    };
    match (flags.command, response) {
        (Command::Status, Response::Status(status)) => {
            out!("{}", human_status(&status));
            Ok(ExitCode::SUCCESS)
        }
        (Command::StatusJson, Response::Status(status)) => match serde_json::to_string(&status) {
            Ok(json) => {
                outln!("{json}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                let line = format!("{name}: status: {e}");
                fail(Error::io("status", io::Error::other(e)), line)
            }
        },
        (Command::History, Response::History(history)) => {
            out!("{}", history.lines());
            Ok(ExitCode::SUCCESS)
        }
        (Command::HistoryJson, Response::History(history)) => {
            outln!("{}", history.json());
            Ok(ExitCode::SUCCESS)
        }
        (Command::Metrics, Response::Metrics { text }) => {
            out!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        (Command::Stop, Response::Stopped { code }) => {
            outln!("stopped {name} exit code {code}");
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        (
            Command::Reload,
            Response::Reloaded {
                old_pid,
                new_pid,
                ms,
            },
        ) => {
            if on_probation {
                outln!("probation passed: pid {new_pid} serves {name}");
            } else {
                let old = old_pid.map_or_else(|| "none".to_string(), |p| p.to_string());
                outln!("reloaded {name}: pid {old} -> {new_pid} in {ms} ms");
            }
            Ok(ExitCode::SUCCESS)
        }
        (Command::Promote, Response::Promoted { pid, after_ms }) => {
            let after = protocol::seconds(after_ms);
            outln!("promoted {name}: pid {pid} passed probation after {after}");
            Ok(ExitCode::SUCCESS)
        }
        (Command::Rollback, Response::RolledBack { pid }) => {
            outln!("rolled back {name}: pid {pid} serves again");
            Ok(ExitCode::SUCCESS)
        }
        (_, Response::Refused { reason }) => refused(&format!("{name}: "), reason),
        (Command::Reload, Response::Failed { reason }) => {
            refused(&format!("reload of {name} failed: "), reason)
        }
        (Command::Upgrade, Response::Upgraded(up)) => {
            outln!("upgraded {name}: {}", upgraded(&up));
            Ok(ExitCode::SUCCESS)
        }
        (Command::Upgrade, Response::Failed { reason }) => {
            refused(&format!("upgrade of {name} failed: "), reason)
        }
        (_, Response::Failed { reason }) => refused(&format!("{name}: "), reason),
        (_, other) => {
            let text = format!("unexpected answer from the supervisor: {other:?}");
            let line = format!("{name}: {text}");
            fail(
                Error::io(
                    "asking the supervisor",
                    io::Error::new(io::ErrorKind::InvalidData, text),
                ),
                line,
            )
        }
    }
}

/// `child pid 4300 -> 4311 in 9 ms; supervisor pid 4242 now runs PATH (protocol 1 -> 2)`.
fn upgraded(up: &Upgraded) -> String {
    let old = up
        .old_pid
        .map_or_else(|| "none".to_string(), |p| p.to_string());
    format!(
        "child pid {old} -> {} in {} ms; supervisor pid {} now runs {} (protocol {} -> {})",
        up.new_pid, up.ms, up.supervisor_pid, up.path, up.from, up.to
    )
}

/// This binary, open (`None` if it cannot be: the supervisor opens the path instead).
fn own_executable() -> Option<std::os::fd::OwnedFd> {
    let path = crate::sys::own_executable().ok()?;
    rustix::fs::open(
        &path,
        crate::sys::executable_flags(),
        rustix::fs::Mode::empty(),
    )
    .ok()
}

/// The reload (or upgrade) request: this very binary, and the new arguments and
/// listener flags.
fn reload_request(flags: &Flags) -> io::Result<ReloadRequest> {
    let exe = std::env::current_exe()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot find this executable: {e}")))?;
    Ok(ReloadRequest {
        path: exe.into_os_string().into_vec(),
        args: flags
            .reload_args
            .clone()
            .map(|args| args.into_iter().map(OsString::into_vec).collect()),
        listeners: flags.listeners.clone(),
    })
}

/// `status` as text, a line per fact.
fn human_status(s: &Status) -> String {
    let mut out = format!(
        "{}: supervisor pid {} started {} ({}; protocol {})\n",
        s.name, s.supervisor_pid, s.supervisor_started, s.state, s.protocol
    );
    match (s.child_pid, &s.child_started) {
        (Some(pid), Some(started)) => {
            out.push_str(&format!("  child pid {pid} started {started}\n"))
        }
        _ => out.push_str("  no child running\n"),
    }
    if let Some(path) = &s.child_path {
        out.push_str(&format!("  binary {path}\n"));
    }
    if let Some(ends) = &s.probation_ends {
        out.push_str(&format!("  on probation until {ends}\n"));
    }
    if let Some(pid) = s.standby_pid {
        out.push_str(&format!("  old child pid {pid} stands by\n"));
    }
    out.push_str(&format!("  command line {}\n", s.child_args.join(" ")));
    if let Some(previous) = &s.previous_path {
        out.push_str(&format!("  previous binary {previous}\n"));
    }
    if let Some(path) = &s.supervisor_path {
        let [oldest, newest] = s.protocols;
        out.push_str(&format!(
            "  supervisor binary {path}, upgrades {}, protocols {oldest}-{newest}\n",
            s.upgrades
        ));
    }
    out.push_str(&format!(
        "  reloads {}, failures {}, restarts {}\n",
        s.reloads, s.failures, s.restarts
    ));
    if let Some(bytes) = s.last_reload_state_bytes {
        out.push_str(&format!(
            "  state taken at the last reload: {bytes} bytes\n"
        ));
    }
    for (name, addr) in &s.listeners {
        out.push_str(&format!("  listener {name} {addr}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_the_state_taken_at_the_last_reload_if_any() {
        let mut status = Status {
            name: "svc".into(),
            protocol: protocol::PROTOCOL,
            protocols: [1, protocol::PROTOCOL],
            supervisor_pid: 7,
            supervisor_started: "2026-12-04T01:50:58Z".into(),
            supervisor_path: Some("/bin/svc".into()),
            upgrades: 0,
            lameduck_ms: 2_000,
            hello_timeout_ms: 30_000,
            child_pid: Some(8),
            child_path: Some("/bin/svc".into()),
            child_args: vec!["svc".into()],
            child_started: Some("2026-12-04T01:51:00Z".into()),
            previous_path: None,
            reloads: 1,
            failures: 0,
            restarts: 0,
            state: "running".into(),
            listeners: Default::default(),
            standby_pid: None,
            probation_ends: None,
            last_reload_state_bytes: None,
        };
        assert!(!human_status(&status).contains("state taken"));
        status.last_reload_state_bytes = Some(1_048_576);
        let text = human_status(&status);
        assert!(
            text.contains("  reloads 1, failures 0, restarts 0\n  state taken at the last reload: 1048576 bytes\n"),
            "{text}"
        );
    }
}
