//! The command-line modes that talk to a running supervisor: `stop`, `status`,
//! `status-json`, `reload`, `upgrade`. What they print is here; the talking is
//! [`control::client`](crate::control::client).

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

use crate::config::Config;
use crate::control::client::{AskError, Waits, ask_with};
use crate::control::protocol::{ReloadRequest, Request, Response, Status, Upgraded};
use crate::dir;
use crate::flags::{Command, Flags};

/// `PROGRAM --littleboss=start`: how to start a supervisor of this program, as it was
/// run (its `argv[0]`).
fn start_command(config: &Config) -> String {
    let program = std::env::args_os()
        .next()
        .map_or_else(|| config.name.clone(), |p| p.to_string_lossy().into_owned());
    format!("{program} --{}=start", config.flag)
}

/// Runs a client command and returns the process's exit code.
pub(crate) fn run(config: &Config, flags: &Flags) -> ExitCode {
    let name = &config.name;
    let dir = match dir::control_dir() {
        Ok(dir) => dir,
        Err(e) => {
            errln!("littleboss: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = dir::socket_path(&dir, name);
    let request = match flags.command {
        Command::Status | Command::StatusJson => Request::Status,
        Command::Stop => Request::Stop,
        Command::Reload => match reload_request(flags) {
            Ok(request) => Request::Reload(request),
            Err(e) => {
                errln!("reload of {name} failed: {e}");
                return ExitCode::FAILURE;
            }
        },
        Command::Upgrade => match reload_request(flags) {
            Ok(request) => Request::Upgrade(request),
            Err(e) => {
                errln!("upgrade of {name} failed: {e}");
                return ExitCode::FAILURE;
            }
        },
        Command::Bypass | Command::Start | Command::Dev => return ExitCode::FAILURE,
    };
    if dir.exists() {
        if let Err(e) = dir::check(&dir) {
            errln!("littleboss: {e}");
            return ExitCode::FAILURE;
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
        ready: if config.calls_ready {
            config.ready_timeout
        } else {
            config.settle
        },
    };
    let exe_fd = exe.as_ref().map(|fd| fd.as_fd());
    let response = match ask_with(&path, &request, exe_fd, &own, contacted) {
        Ok(response) => response,
        Err(AskError::NotRunning(why)) => {
            errln!("{name}: no supervisor running ({why})");
            errln!("{name}: start one with: {}", start_command(config));
            return ExitCode::FAILURE;
        }
        Err(AskError::Timeout { within, waiting }) => {
            errln!(
                "{name}: no answer from the supervisor within {} s ({waiting})",
                within.as_secs()
            );
            return ExitCode::FAILURE;
        }
        Err(AskError::Version(why)) => {
            match flags.command {
                Command::Upgrade => errln!("upgrade of {name} failed: {why}"),
                _ => errln!("{name}: {why}"),
            }
            return ExitCode::FAILURE;
        }
        Err(AskError::Io(e)) => {
            errln!(
                "{name}: talking to the supervisor at {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    match (flags.command, response) {
        (Command::Status, Response::Status(status)) => {
            out!("{}", human_status(&status));
            ExitCode::SUCCESS
        }
        (Command::StatusJson, Response::Status(status)) => match serde_json::to_string(&status) {
            Ok(json) => {
                outln!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                errln!("{name}: status: {e}");
                ExitCode::FAILURE
            }
        },
        (Command::Stop, Response::Stopped { code }) => {
            outln!("stopped {name} exit code {code}");
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        (
            Command::Reload,
            Response::Reloaded {
                old_pid,
                new_pid,
                ms,
            },
        ) => {
            let old = old_pid.map_or_else(|| "none".to_string(), |p| p.to_string());
            outln!("reloaded {name}: pid {old} -> {new_pid} in {ms} ms");
            ExitCode::SUCCESS
        }
        (Command::Reload, Response::Failed { reason }) => {
            errln!("reload of {name} failed: {reason}");
            ExitCode::FAILURE
        }
        (Command::Upgrade, Response::Upgraded(up)) => {
            outln!("upgraded {name}: {}", upgraded(&up));
            ExitCode::SUCCESS
        }
        (Command::Upgrade, Response::Failed { reason }) => {
            errln!("upgrade of {name} failed: {reason}");
            ExitCode::FAILURE
        }
        (_, Response::Failed { reason }) => {
            errln!("{name}: {reason}");
            ExitCode::FAILURE
        }
        (_, other) => {
            errln!("{name}: unexpected answer from the supervisor: {other:?}");
            ExitCode::FAILURE
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
    for (name, addr) in &s.listeners {
        out.push_str(&format!("  listener {name} {addr}\n"));
    }
    out
}
