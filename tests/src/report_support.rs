//! Support for `tests/tests/flags.rs` and `tests/tests/users.rs` and their helper
//! programs (`src/bin/lb-*.rs`): what a helper knows about itself, a tiny HTTP
//! server that answers every request with it, as JSON; and, for the tests, a supervisor
//! started with a command line of their choosing ([`CustomSupervisor`]).
//!
//! Every helper takes its `http` listener, prints `PROGRAM: pid PID serving http on
//! ADDR` on stderr (the line [`Spawned::wait_serving`](crate::Spawned::wait_serving)
//! reads), calls `lb.ready()`, and answers each request with the [`Report`] it made at
//! start, until lameduck.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use littleboss::Context;
use serde_json::{Map, Value, json};

use crate::serve::{mode_name, serve_http, take_http};
use crate::{COMMAND_TIMEOUT, Env, Outcome, Spawned, http_get, run_for, status_numbers, wait_gone};

/// `env`, to start a helper with variables of its own (it execs the helper, which
/// keeps its pid).
pub const ENV: &str = "/usr/bin/env";

/// What a helper answers: a JSON object.
pub type Report = Map<String, Value>;

/// The process as it sees itself: `pid`, `mode` (`bypass` or `supervised`), `args`
/// (`lb.args()`), `argv` (`std::env::args_os()`), `uid`, `gid` and `groups` (the
/// `Uid:`, `Gid:` and `Groups:` lines of `/proc/self/status`, as lists of numbers) and
/// `env` (`HOME`, `USER` and `LOGNAME`, `null` when unset).
pub fn report(lb: &Context) -> Report {
    let lossy = |args: Vec<std::ffi::OsString>| -> Vec<String> {
        args.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    let ids = |field: &str| status_numbers(std::process::id(), field).unwrap_or_default();
    let var = |name: &str| -> Value {
        std::env::var_os(name).map_or(Value::Null, |v| json!(v.to_string_lossy()))
    };
    let mut report = Map::new();
    report.insert("pid".into(), json!(std::process::id()));
    report.insert("mode".into(), json!(mode_name(lb)));
    report.insert("args".into(), json!(lossy(lb.args())));
    report.insert("argv".into(), json!(lossy(std::env::args_os().collect())));
    report.insert("uid".into(), json!(ids("Uid")));
    report.insert("gid".into(), json!(ids("Gid")));
    report.insert("groups".into(), json!(ids("Groups")));
    report.insert(
        "env".into(),
        json!({ "HOME": var("HOME"), "USER": var("USER"), "LOGNAME": var("LOGNAME") }),
    );
    report
}

/// Serves the `http` listener, answering every request with `report` as JSON, until
/// lameduck; `program` names the helper in its stderr lines.
pub async fn serve(lb: Context, program: &str, report: Report) -> io::Result<()> {
    let listener = take_http(&lb, program)?;
    let body = format!("{}\n", Value::Object(report));
    lb.ready();
    serve_http(
        listener,
        lb.lameduck(),
        &format!("{program}: accept"),
        "application/json",
        &body,
    )
    .await;
    eprintln!("{program}: pid {} wound down", std::process::id());
    Ok(())
}

/// A supervisor started with a command line of the test's choosing (a renamed flag,
/// clap's spelling, variables, another user): a [`Spawned`] guard that also knows how
/// to ask for its status, and tracks every child pid a status shows so that its drop
/// kills it too.
#[derive(Debug)]
pub struct CustomSupervisor<'e> {
    env: &'e Env,
    bin: PathBuf,
    /// The arguments that ask for `status-json`.
    status_args: Vec<String>,
    /// Client commands run as this uid (and gid), with this `LITTLEBOSS_DIR`.
    client_as: Option<(u32, PathBuf)>,
    process: Spawned,
}

impl Deref for CustomSupervisor<'_> {
    type Target = Spawned;

    fn deref(&self) -> &Spawned {
        &self.process
    }
}

impl<'e> CustomSupervisor<'e> {
    /// Starts `bin ARGS` (the arguments include the start mode) with `vars` added to
    /// its environment; `status_args` ask it for `status-json`.
    pub fn spawn(
        env: &'e Env,
        bin: &Path,
        vars: &[(&str, String)],
        args: &[&str],
        status_args: &[&str],
    ) -> CustomSupervisor<'e> {
        CustomSupervisor {
            env,
            bin: bin.to_path_buf(),
            status_args: status_args.iter().map(|s| s.to_string()).collect(),
            client_as: None,
            process: spawn_with(env, bin, vars, args),
        }
    }

    /// Wraps `process`, a supervisor of `bin` started some other way (through `setpriv`,
    /// say); `status_args` ask it for `status-json`.
    pub fn of_process(
        env: &'e Env,
        bin: &Path,
        status_args: &[&str],
        process: Spawned,
    ) -> CustomSupervisor<'e> {
        CustomSupervisor {
            env,
            bin: bin.to_path_buf(),
            status_args: status_args.iter().map(|s| s.to_string()).collect(),
            client_as: None,
            process,
        }
    }

    /// Runs its client commands as `uid` (and gid `uid`), with `LITTLEBOSS_DIR=dir`.
    pub fn with_client(mut self, uid: u32, dir: PathBuf) -> CustomSupervisor<'e> {
        self.client_as = Some((uid, dir));
        self
    }

    /// Runs its binary with `args` (a client command), as the client user if one is set.
    pub fn run(&self, args: &[&str]) -> Outcome {
        match &self.client_as {
            None => self.env.run(&self.bin, args),
            Some((uid, dir)) => {
                let mut command = self.env.command(&self.bin);
                command
                    .args(args)
                    .env("LITTLEBOSS_DIR", dir)
                    .current_dir("/")
                    .uid(*uid)
                    .gid(*uid);
                run_for(command, COMMAND_TIMEOUT)
            }
        }
    }

    /// Its `status-json`, or the failed command's outcome; tracks the child it shows.
    pub fn try_status(&self) -> Result<Value, Outcome> {
        let args: Vec<&str> = self.status_args.iter().map(String::as_str).collect();
        let outcome = self.run(&args);
        if outcome.code() != Some(0) {
            return Err(outcome);
        }
        let status: Value = serde_json::from_str(&outcome.stdout)
            .unwrap_or_else(|e| panic!("status-json printed invalid JSON ({e}): {outcome}"));
        if let Some(pid) = status["child_pid"].as_u64() {
            self.track(u32::try_from(pid).expect("a pid"));
        }
        Ok(status)
    }

    /// Its `status-json`; panics (with its stderr) if the command fails.
    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|outcome| panic!("status-json failed: {outcome}\n{}", self.logs()))
    }

    /// Waits until it reports `running` with a child (its status), or until it exits
    /// (its stderr).
    pub fn wait_started(&self) -> Result<Value, String> {
        self.wait_for("the supervisor to be running or to exit", || {
            if self.try_exit().is_some() {
                return Some(Err(self.stderr()));
            }
            let status = self.try_status().ok()?;
            (status["state"] == "running" && status["child_pid"].is_u64()).then_some(Ok(status))
        })
    }

    /// Waits until it reports `running` with a child; panics if it exits first.
    pub fn wait_running(&self) -> Value {
        self.wait_started().unwrap_or_else(|_| {
            panic!(
                "the supervisor exited ({:?}) before it was running\n{}",
                self.try_exit(),
                self.logs()
            )
        })
    }

    /// Asks it to stop with `stop_args`, and checks that it and its child are gone, with
    /// exit code 0 and no control socket left.
    pub fn stop(&self, stop_args: &[&str], name: &str, socket: &Path) {
        let child = pid_of(&self.status(), "child_pid");
        let outcome = self.run(stop_args);
        assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", self.logs());
        assert!(
            outcome.stdout.contains(&format!("stopping {name}"))
                && outcome
                    .stdout
                    .contains(&format!("stopped {name} exit code 0")),
            "{outcome}"
        );
        assert_eq!(self.wait_code(), 0, "{}", self.logs());
        wait_gone(child, "the child");
        assert!(!socket.exists(), "{} is left behind", socket.display());
    }
}

/// Starts `bin ARGS` as a guarded process, through `env VAR=VALUE...` if `vars` is not
/// empty.
pub fn spawn_with(env: &Env, bin: &Path, vars: &[(&str, String)], args: &[&str]) -> Spawned {
    if vars.is_empty() {
        return env.spawn(bin, args);
    }
    let mut all: Vec<OsString> = vars
        .iter()
        .map(|(name, value)| format!("{name}={value}").into())
        .collect();
    all.push(bin.as_os_str().to_os_string());
    all.extend(args.iter().map(OsString::from));
    env.spawn(Path::new(ENV), &all)
}

/// `GET /` on `addr`, its JSON answer.
pub fn get_json(addr: SocketAddr) -> Value {
    let body = http_get(addr).unwrap_or_else(|e| panic!("GET http://{addr}/: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad JSON from {addr} ({e}): {body}"))
}

/// A pid field of a status or report.
pub fn pid_of(value: &Value, key: &str) -> u32 {
    value[key]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or_else(|| panic!("no {key} in {value}"))
}

/// A path as a string (the helpers' paths are UTF-8).
pub fn shown(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_string()
}

/// Starts a supervisor with `start(port)` on a port from `pick`, again on another port
/// if the one picked was taken meanwhile (by another test); returns it, its status and
/// the port.
pub fn start_on_port<'e>(
    pick: impl Fn() -> u16,
    start: impl Fn(u16) -> CustomSupervisor<'e>,
) -> (CustomSupervisor<'e>, Value, u16) {
    let mut failures = Vec::new();
    for _ in 0..5 {
        let port = pick();
        let sup = start(port);
        match sup.wait_started() {
            Ok(status) => return (sup, status, port),
            Err(stderr) if stderr.contains("address in use") => failures.push(stderr),
            Err(_) => panic!(
                "the supervisor exited ({:?}) before it was running\n{}",
                sup.try_exit(),
                sup.logs()
            ),
        }
    }
    panic!("no free port after 5 tries:\n{}", failures.join("\n"));
}
