//! A renamed control flag, the mode taken from the program's own parser, what the child
//! receives as arguments, the supervisor init hook, and children running as another
//! user.
//!
//! The helpers (`src/bin/lb-priv-*.rs`) answer every HTTP request with a JSON report of
//! themselves: pid, mode, `lb.args()`, argv, uid, gid, groups, `HOME`, `USER`, `LOGNAME`
//! (see `littleboss_tests::privsep_support`). The tests about users need root; without
//! it they say so on stderr and pass without checking anything.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::Deref;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use littleboss_tests::{
    COMMAND_TIMEOUT, DEADLINE, Env, Outcome, Spawned, Value, bin, children_of,
    executable_by_others, free_port, http_get, is_gone, listener_addr, open_tempdir, port_is_free,
    run_for, runnable_by_nobody, status_numbers, wait_for, wait_gone,
};

/// `env`, to start a helper with variables of its own (it execs the helper, which
/// keeps its pid).
const ENV: &str = "/usr/bin/env";

/// `setpriv`, to start a helper as another user (it execs the helper too).
const SETPRIV: &str = "/usr/bin/setpriv";

/// The uid (and gid) of `nobody` on Linux.
const NOBODY: u32 = 65534;

// ---------------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------------

/// A supervisor started with a command line of the test's choosing (a renamed flag,
/// clap's spelling, variables, another user): a [`Spawned`] guard that also knows how
/// to ask for its status, and tracks every child pid a status shows so that its drop
/// kills it too.
struct Sup<'e> {
    env: &'e Env,
    bin: PathBuf,
    /// The arguments that ask for `status-json`.
    status_args: Vec<String>,
    /// Client commands run as this uid (and gid), with this `LITTLEBOSS_DIR`.
    client_as: Option<(u32, PathBuf)>,
    process: Spawned,
}

impl Deref for Sup<'_> {
    type Target = Spawned;

    fn deref(&self) -> &Spawned {
        &self.process
    }
}

impl<'e> Sup<'e> {
    /// Starts `bin ARGS` (the arguments include the start mode) with `vars` added to
    /// its environment; `status_args` ask it for `status-json`.
    fn spawn(
        env: &'e Env,
        bin: &Path,
        vars: &[(&str, String)],
        args: &[&str],
        status_args: &[&str],
    ) -> Sup<'e> {
        Sup {
            env,
            bin: bin.to_path_buf(),
            status_args: status_args.iter().map(|s| s.to_string()).collect(),
            client_as: None,
            process: spawn_with(env, bin, vars, args),
        }
    }

    /// Runs its binary with `args` (a client command), as the client user if one is set.
    fn run(&self, args: &[&str]) -> Outcome {
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

    fn try_status(&self) -> Result<Value, Outcome> {
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

    fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|outcome| panic!("status-json failed: {outcome}\n{}", self.logs()))
    }

    /// Waits until it reports `running` with a child (its status), or until it exits
    /// (its stderr).
    fn wait_started(&self) -> Result<Value, String> {
        self.wait_for("the supervisor to be running or to exit", || {
            if self.try_exit().is_some() {
                return Some(Err(self.stderr()));
            }
            let status = self.try_status().ok()?;
            (status["state"] == "running" && status["child_pid"].is_u64()).then_some(Ok(status))
        })
    }

    /// Waits until it reports `running` with a child; panics if it exits first.
    fn wait_running(&self) -> Value {
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
    fn stop(&self, stop_args: &[&str], name: &str, socket: &Path) {
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
fn spawn_with(env: &Env, bin: &Path, vars: &[(&str, String)], args: &[&str]) -> Spawned {
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
fn get_json(addr: SocketAddr) -> Value {
    let body = http_get(addr).unwrap_or_else(|e| panic!("GET http://{addr}/: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad JSON from {addr} ({e}): {body}"))
}

/// A pid field of a status or report.
fn pid_of(value: &Value, key: &str) -> u32 {
    value[key]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or_else(|| panic!("no {key} in {value}"))
}

/// A list of strings from a JSON array (panics on anything else).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v}"))
                .to_string()
        })
        .collect()
}

/// A list of numbers from a JSON array (panics on anything else).
fn numbers(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_u64().unwrap_or_else(|| panic!("not a number: {v}")))
        .collect()
}

/// `&["a", "b"]` as owned strings, to compare with [`strings`].
fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A path as a string (the helpers' paths are UTF-8).
fn shown(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_string()
}

/// A privileged TCP port (600..1000) on 127.0.0.1 that was free a moment ago; each call
/// starts its search elsewhere, so that tests running side by side rarely collide.
fn free_privileged_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() * 7 + NEXT.fetch_add(53, Ordering::Relaxed);
    (0..400)
        .map(|i| 600 + ((start + i) % 400) as u16)
        .find(|&port| port_is_free(SocketAddr::from(([127, 0, 0, 1], port))))
        .expect("a free port in 600..1000")
}

/// Starts a supervisor with `start(port)` on a port from `pick`, again on another port
/// if the one picked was taken meanwhile (by another test); returns it, its status and
/// the port.
fn start_on_port<'e>(
    pick: impl Fn() -> u16,
    start: impl Fn(u16) -> Sup<'e>,
) -> (Sup<'e>, Value, u16) {
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

/// Says on stderr that `test` checked nothing, and why. Written to the process's
/// stderr directly, past the test harness's capture of `eprintln!`, so that a skipped
/// test never passes silently.
fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Whether the test runs as root; if not, says on stderr that `test` is skipped.
fn root_or_skip(test: &str) -> bool {
    let uid = rustix::process::geteuid().as_raw();
    if uid != 0 {
        skip(
            test,
            &format!("needs root to run children as another user (uid is {uid})"),
        );
    }
    uid == 0
}

/// A `/etc/passwd` entry: uid, gid, home.
fn passwd(user: &str) -> Option<(u32, u32, String)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 7 && fields[0] == user).then(|| {
            (
                fields[2].parse().expect("a uid"),
                fields[3].parse().expect("a gid"),
                fields[5].to_string(),
            )
        })
    })
}

/// A `/etc/group` entry: gid and members.
fn group(name: &str) -> Option<(u32, Vec<String>)> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && fields[0] == name).then(|| {
            let members = fields[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            (fields[2].parse().expect("a gid"), members)
        })
    })
}

/// The gids of the groups in `/etc/group` that list `user` as a member.
fn member_gids(user: &str) -> BTreeSet<u64> {
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[3].split(',').any(|m| m == user))
                .then(|| fields[2].parse().ok())
                .flatten()
        })
        .collect()
}

/// A control directory owned by `nobody`, mode 0700, in `dir`.
fn nobody_control_dir(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    std::fs::create_dir(&run).expect("mkdir");
    std::os::unix::fs::chown(&run, Some(NOBODY), Some(NOBODY)).expect("chown");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    run
}

// ---------------------------------------------------------------------------------
// 1. A renamed control flag
// ---------------------------------------------------------------------------------

#[test]
fn renamed_flag_starts_reports_and_stops_a_supervisor() {
    let env = Env::new();
    let bin = bin!("lb-priv-lb");
    // `--littleboss=stop` is the program's own argument here, and reaches it.
    let sup = Sup::spawn(
        &env,
        bin,
        &[],
        &["--lb", "start", "--littleboss=stop"],
        &["--lb=status-json"],
    );
    let status = sup.wait_running();
    assert_eq!(status["name"], "lbflag", "{status}");
    assert_eq!(pid_of(&status, "supervisor_pid"), sup.pid(), "{status}");
    let child = pid_of(&status, "child_pid");
    let addr = listener_addr(&status, "http").unwrap_or_else(|| panic!("{status}"));
    assert_ne!(addr.port(), 0, "{status}");
    assert_eq!(
        strings(&status["child_args"]),
        vec![
            shown(bin),
            format!("--http={addr}"),
            "--littleboss=stop".into()
        ],
        "{status}"
    );

    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), child, "{answer}");
    assert_eq!(answer["mode"], "supervised", "{answer}");
    assert_eq!(
        strings(&answer["args"]),
        vec![shown(bin), "--littleboss=stop".into()],
        "{answer}"
    );
    assert!(env.socket("lbflag").exists());

    // A second start is refused, and the refusal names the renamed flag.
    let outcome = sup.run(&["-lb=start"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "already running (supervisor pid {}); stop it with --lb=stop or reload it with --lb=reload",
            sup.pid()
        )),
        "{outcome}"
    );

    // Human-readable status works with the renamed flag too.
    let outcome = sup.run(&["--lb=status"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}");
    assert!(outcome.stdout.contains(&child.to_string()), "{outcome}");

    sup.stop(&["--lb=stop"], "lbflag", &env.socket("lbflag"));
}

#[test]
fn renamed_flag_leaves_littleboss_flag_to_the_program() {
    let env = Env::new();
    let bin = bin!("lb-priv-lb");
    // `--littleboss=start` is an ordinary argument now: the program runs directly.
    let process = env.spawn(bin, &["--littleboss=start", "-v"]);
    let addr = process.wait_serving(process.pid(), "http");
    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), process.pid(), "{answer}");
    assert_eq!(answer["mode"], "bypass", "{answer}");
    assert_eq!(
        strings(&answer["args"]),
        vec![shown(bin), "--littleboss=start".into(), "-v".into()],
        "{answer}"
    );
    // No supervisor: no child, no control directory, no socket.
    assert_eq!(children_of(process.pid()), Vec::<u32>::new());
    assert!(!env.socket("lbflag").exists());
    assert!(!env.dir().exists(), "{} was created", env.dir().display());
    let outcome = env.run(bin, &["--lb=status-json"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains("lbflag: no supervisor running"),
        "{outcome}"
    );
}

#[test]
fn renamed_flag_rejects_an_unknown_mode_naming_it() {
    let env = Env::new();
    let outcome = env.run(bin!("lb-priv-lb"), &["--lb=bogus"]);
    assert_eq!(outcome.code(), Some(2), "{outcome}");
    assert!(
        outcome.stderr.contains(
            "unknown mode \"bogus\" for --lb; the modes are bypass, start, dev, stop, reload, status, status-json"
        ),
        "{outcome}"
    );
    assert!(
        outcome
            .stderr
            .lines()
            .any(|line| line.starts_with("usage: ") && line.contains(" [--lb=MODE] ")),
        "{outcome}"
    );
    assert!(!outcome.stderr.contains("--littleboss"), "{outcome}");
    assert!(!env.dir().exists());
}

// ---------------------------------------------------------------------------------
// 2. The mode from the program's own parser (clap)
// ---------------------------------------------------------------------------------

#[test]
fn clap_help_lists_littleboss_and_listener_flags() {
    let env = Env::new();
    let outcome = env.run(bin!("lb-priv-clap"), &["--help"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}");
    for flag in [
        "--littleboss <LITTLEBOSS>",
        "--http <HTTP>",
        "--name-to-greet",
    ] {
        assert!(outcome.stdout.contains(flag), "no {flag:?} in:\n{outcome}");
    }
    assert!(!env.dir().exists());
}

#[test]
fn clap_program_starts_reports_reloads_and_stops_with_its_own_parser() {
    let env = Env::new();
    let bin = bin!("lb-priv-clap");
    let sup = Sup::spawn(
        &env,
        bin,
        &[],
        &[
            "--littleboss",
            "start",
            "--http",
            "127.0.0.1:0",
            "--name-to-greet",
            "X",
        ],
        &["--littleboss", "status-json"],
    );
    let status = sup.wait_running();
    assert_eq!(status["name"], "lbclap", "{status}");
    assert_eq!(pid_of(&status, "supervisor_pid"), sup.pid(), "{status}");
    let child = pid_of(&status, "child_pid");
    let addr = listener_addr(&status, "http").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "{status}");
    assert_ne!(addr.port(), 0, "{status}");
    // The child gets the listener flag as bound, and littleboss's flags are gone.
    let child_args = vec![
        shown(bin),
        format!("--http={addr}"),
        "--name-to-greet".into(),
        "X".into(),
    ];
    assert_eq!(strings(&status["child_args"]), child_args, "{status}");

    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), child, "{answer}");
    assert_eq!(answer["mode"], "supervised", "{answer}");
    assert_eq!(answer["greet"], "X", "{answer}");
    assert_eq!(strings(&answer["argv"]), child_args, "{answer}");
    assert_eq!(
        strings(&answer["args"]),
        owned(&[bin.to_str().unwrap(), "--name-to-greet", "X"]),
        "{answer}"
    );
    // The child's own parse of lb.args() sees no mode.
    assert_eq!(answer["mode_flag"], "bypass", "{answer}");

    // A reload with new arguments after `--`, as clap takes them.
    let outcome = sup.run(&["--littleboss", "reload", "--", "--name-to-greet", "Y"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
    let status = sup.status();
    let new_child = pid_of(&status, "child_pid");
    assert_ne!(new_child, child, "{status}");
    assert_eq!(listener_addr(&status, "http"), Some(addr), "{status}");
    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), new_child, "{answer}");
    assert_eq!(answer["greet"], "Y", "{answer}");
    assert_eq!(
        strings(&answer["args"]),
        owned(&[bin.to_str().unwrap(), "--name-to-greet", "Y"]),
        "{answer}"
    );

    sup.stop(&["--littleboss", "stop"], "lbclap", &env.socket("lbclap"));
}

// ---------------------------------------------------------------------------------
// 3. Context::args() and what the child receives
// ---------------------------------------------------------------------------------

/// The program's own arguments in the tests below, `--` and what follows included.
const PROGRAM_ARGS: &[&str] = &[
    "-v",
    "--keep=1",
    "extra",
    "two words",
    "",
    "--",
    "--littleboss=stop",
    "--http=127.0.0.1:1",
    "-spare",
    "tail",
];

#[test]
fn child_gets_bound_listener_flags_and_the_program_args_unchanged() {
    let env = Env::new();
    let bin = bin!("lb-priv-args");
    // Go's spellings (one dash, value apart), mixed in among the program's arguments.
    let mut args = vec![
        "-v",
        "-littleboss",
        "start",
        "--keep=1",
        "-http",
        "127.0.0.1:0",
    ];
    args.extend(&PROGRAM_ARGS[2..]);
    let sup = Sup::spawn(&env, bin, &[], &args, &["--littleboss=status-json"]);
    let status = sup.wait_running();
    let addr = listener_addr(&status, "http").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(status["listeners"]["spare"], "off", "{status}");

    // The child's argv: the program name, every listener flag as bound (in declaration
    // order, `--spare=` for the one that is off), then the program's arguments, in order.
    let mut argv = vec![shown(bin), format!("--http={addr}"), "--spare=".into()];
    argv.extend(owned(PROGRAM_ARGS));
    assert_eq!(strings(&status["child_args"]), argv, "{status}");

    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), pid_of(&status, "child_pid"));
    assert_eq!(strings(&answer["argv"]), argv, "{answer}");
    // lb.args(): littleboss's flags removed, everything else (after `--` too) as given.
    let mut expected = vec![shown(bin)];
    expected.extend(owned(PROGRAM_ARGS));
    assert_eq!(strings(&answer["args"]), expected, "{answer}");

    // New arguments at reload (everything after the reload's first `--`, a second `--`
    // included), with the listener moved: the same rules for the new child.
    let reload_args = ["-w", "--keep=2", "--", "--http=127.0.0.1:1", "last"];
    let mut command = vec!["--littleboss=reload", "--http=127.0.0.1:0", "--"];
    command.extend(reload_args);
    let outcome = sup.run(&command);
    assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
    let status = sup.status();
    let moved = listener_addr(&status, "http").unwrap_or_else(|| panic!("{status}"));
    assert_ne!(moved, addr, "{status}");
    let mut argv = vec![shown(bin), format!("--http={moved}"), "--spare=".into()];
    argv.extend(owned(&reload_args));
    assert_eq!(strings(&status["child_args"]), argv, "{status}");
    let answer = get_json(moved);
    assert_eq!(pid_of(&answer, "pid"), pid_of(&status, "child_pid"));
    assert_eq!(strings(&answer["argv"]), argv, "{answer}");
    let mut expected = vec![shown(bin)];
    expected.extend(owned(&reload_args));
    assert_eq!(strings(&answer["args"]), expected, "{answer}");

    sup.stop(&["--littleboss=stop"], "lbargs", &env.socket("lbargs"));
}

#[test]
fn bypassed_program_gets_its_args_without_littleboss_flags() {
    let env = Env::new();
    let bin = bin!("lb-priv-args");
    let mut args = vec!["-v", "--http=127.0.0.1:0", "--keep=1"];
    args.extend(&PROGRAM_ARGS[2..]);
    let process = env.spawn(bin, &args);
    let addr = process.wait_serving(process.pid(), "http");
    let answer = get_json(addr);
    assert_eq!(answer["mode"], "bypass", "{answer}");
    let mut argv = vec![shown(bin)];
    argv.extend(owned(&args));
    assert_eq!(strings(&answer["argv"]), argv, "{answer}");
    let mut expected = vec![shown(bin)];
    expected.extend(owned(PROGRAM_ARGS));
    assert_eq!(strings(&answer["args"]), expected, "{answer}");
}

// ---------------------------------------------------------------------------------
// 4. The supervisor init hook
// ---------------------------------------------------------------------------------

/// The lines of a log file (none if it does not exist).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Starts `lb-priv-init` supervised on a free port, with its logs at `init_log` and
/// `child_log` (and, if given, `LB_PRIV_INIT_FAIL`).
fn start_init<'e>(env: &'e Env, init_log: &Path, child_log: &Path) -> (Sup<'e>, Value, u16) {
    start_on_port(free_port, |port| {
        let vars = [
            ("LB_PRIV_INIT_LOG", shown(init_log)),
            ("LB_PRIV_CHILD_LOG", shown(child_log)),
            ("LB_PRIV_INIT_PORT", port.to_string()),
        ];
        let http = format!("--http=127.0.0.1:{port}");
        Sup::spawn(
            env,
            bin!("lb-priv-init"),
            &vars,
            &["--littleboss=start", &http],
            &["--littleboss=status-json"],
        )
    })
}

#[test]
fn supervisor_init_runs_once_per_start_in_the_supervisor_after_binding() {
    let env = Env::new();
    let bin = bin!("lb-priv-init");
    let init_log = env.path().join("init.log");
    let child_log = env.path().join("child.log");
    let (sup, status, port) = start_init(&env, &init_log, &child_log);
    let sup_pid = pid_of(&status, "supervisor_pid");
    assert_eq!(sup_pid, sup.pid(), "{status}");
    let child = pid_of(&status, "child_pid");
    assert_eq!(
        listener_addr(&status, "http"),
        Some(SocketAddr::from(([127, 0, 0, 1], port))),
        "{status}"
    );

    // Once, in the supervisor, with the port already bound, before any child.
    let init_line = format!("init pid {sup_pid} port_bound true children 0");
    assert_eq!(lines(&init_log), vec![init_line.clone()], "{}", sup.logs());
    assert_eq!(
        lines(&child_log),
        vec![format!("child pid {child} mode supervised")]
    );
    // The child found the init line already written when it started.
    let answer = get_json(SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(pid_of(&answer, "pid"), child, "{answer}");
    assert_eq!(
        answer["init_log_at_start"],
        format!("{init_line}\n"),
        "{answer}"
    );

    // Not again on reload (nor for the client commands).
    let outcome = env.run(bin, &["--littleboss=reload"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
    let status = sup.status();
    let new_child = pid_of(&status, "child_pid");
    assert_ne!(new_child, child);
    assert_eq!(lines(&init_log), vec![init_line.clone()], "{}", sup.logs());
    assert_eq!(
        lines(&child_log),
        vec![
            format!("child pid {child} mode supervised"),
            format!("child pid {new_child} mode supervised")
        ]
    );
    // A second start while it runs is refused before init.
    let outcome = env.run(
        Path::new(ENV),
        &[
            format!("LB_PRIV_INIT_LOG={}", shown(&init_log)),
            shown(bin),
            "--littleboss=start".into(),
            "--http=127.0.0.1:0".into(),
        ],
    );
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(outcome.stderr.contains("already running"), "{outcome}");
    assert_eq!(lines(&init_log), vec![init_line.clone()], "{outcome}");

    sup.stop(&["--littleboss=stop"], "lbinit", &env.socket("lbinit"));
    drop(sup);

    // Once per start: a second start runs it once more, in the new supervisor.
    let (sup, status, _) = start_init(&env, &init_log, &child_log);
    let second = pid_of(&status, "supervisor_pid");
    assert_eq!(second, sup.pid());
    assert_eq!(
        lines(&init_log),
        vec![
            init_line,
            format!("init pid {second} port_bound true children 0")
        ],
        "{}",
        sup.logs()
    );
    sup.stop(&["--littleboss=stop"], "lbinit", &env.socket("lbinit"));
}

#[test]
fn supervisor_init_does_not_run_in_bypass() {
    let env = Env::new();
    let init_log = env.path().join("init.log");
    let child_log = env.path().join("child.log");
    let vars = [
        ("LB_PRIV_INIT_LOG", shown(&init_log)),
        ("LB_PRIV_CHILD_LOG", shown(&child_log)),
    ];
    let process = spawn_with(&env, bin!("lb-priv-init"), &vars, &[]);
    let addr = process.wait_serving(process.pid(), "http");
    let answer = get_json(addr);
    assert_eq!(answer["mode"], "bypass", "{answer}");
    assert_eq!(answer["init_log_at_start"], Value::Null, "{answer}");
    assert!(!init_log.exists(), "{:?}", lines(&init_log));
    assert_eq!(
        lines(&child_log),
        vec![format!("child pid {} mode bypass", process.pid())]
    );
}

#[test]
fn supervisor_init_failure_stops_the_start() {
    let env = Env::new();
    let init_log = env.path().join("init.log");
    let child_log = env.path().join("child.log");
    // Again on another port if the one picked was taken meanwhile (the bind fails
    // before init runs).
    let (port, outcome) = (0..5)
        .find_map(|_| {
            let port = free_port();
            let args: Vec<String> = vec![
                format!("LB_PRIV_INIT_LOG={}", shown(&init_log)),
                format!("LB_PRIV_CHILD_LOG={}", shown(&child_log)),
                format!("LB_PRIV_INIT_PORT={port}"),
                "LB_PRIV_INIT_FAIL=no database at db.invalid".into(),
                shown(bin!("lb-priv-init")),
                "--littleboss=start".into(),
                format!("--http=127.0.0.1:{port}"),
            ];
            let outcome = env.run(Path::new(ENV), &args);
            (!outcome.stderr.contains("address in use")).then_some((port, outcome))
        })
        .expect("a free port");
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    let line = outcome
        .stderr
        .lines()
        .find(|line| line.contains("supervisor init failed: "))
        .unwrap_or_else(|| panic!("no 'supervisor init failed' line:\n{outcome}"));
    assert!(line.starts_with("littleboss: lbinit: "), "{outcome}");
    assert!(line.contains("no database at db.invalid"), "{outcome}");
    // It ran once, with the listener bound; no child ever started.
    assert_eq!(lines(&init_log).len(), 1, "{outcome}");
    assert!(
        lines(&init_log)[0].ends_with(" port_bound true children 0"),
        "{:?}",
        lines(&init_log)
    );
    assert!(!child_log.exists(), "a child ran: {:?}", lines(&child_log));
    assert!(!outcome.stderr.contains("started child"), "{outcome}");
    // Nothing is left: no control socket, the port is free again.
    assert!(!env.socket("lbinit").exists(), "{outcome}");
    assert!(
        port_is_free(SocketAddr::from(([127, 0, 0, 1], port))),
        "port {port} is still bound"
    );
    // And a status finds no supervisor.
    let outcome = env.run(bin!("lb-priv-init"), &["--littleboss=status-json"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
}

// ---------------------------------------------------------------------------------
// 5. Children running as another user
// ---------------------------------------------------------------------------------

/// What `nobody`'s child must report: uid, gid, groups, HOME, USER, LOGNAME.
fn assert_runs_as(answer: &Value, uid: u32, gid: u32, groups: &BTreeSet<u64>, home: &str) {
    let uid = u64::from(uid);
    let gid = u64::from(gid);
    assert_eq!(numbers(&answer["uid"]), vec![uid; 4], "{answer}");
    assert_eq!(numbers(&answer["gid"]), vec![gid; 4], "{answer}");
    let got: BTreeSet<u64> = numbers(&answer["groups"]).into_iter().collect();
    assert_eq!(&got, groups, "{answer}");
    assert_eq!(answer["env"]["HOME"], home, "{answer}");
    assert_eq!(answer["env"]["USER"], "nobody", "{answer}");
    assert_eq!(answer["env"]["LOGNAME"], "nobody", "{answer}");
}

/// Starts `bin` (a helper whose children run as another user) supervised on a free
/// privileged port, as root.
fn start_privileged<'e>(
    env: &'e Env,
    bin: &Path,
    vars: &[(&str, String)],
) -> (Sup<'e>, Value, u16) {
    start_on_port(free_privileged_port, |port| {
        let http = format!("--http=127.0.0.1:{port}");
        Sup::spawn(
            env,
            bin,
            vars,
            &["--littleboss=start", &http],
            &["--littleboss=status-json"],
        )
    })
}

#[test]
fn children_run_as_nobody_behind_a_privileged_port() {
    if !root_or_skip("children_run_as_nobody_behind_a_privileged_port") {
        return;
    }
    let Some((uid, gid, home)) = passwd("nobody") else {
        skip(
            "children_run_as_nobody_behind_a_privileged_port",
            "no user nobody",
        );
        return;
    };
    let mut groups = member_gids("nobody");
    groups.insert(u64::from(gid));

    let env = Env::new();
    let bin = bin!("lb-priv-user");
    let (sup, status, port) = start_privileged(&env, bin, &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(listener_addr(&status, "http"), Some(addr), "{status}");
    let sup_pid = pid_of(&status, "supervisor_pid");
    assert_eq!(sup_pid, sup.pid());
    // The supervisor keeps root; the child is nobody.
    assert_eq!(status_numbers(sup_pid, "Uid"), Some(vec![0; 4]));
    assert_eq!(status_numbers(sup_pid, "Gid"), Some(vec![0; 4]));
    let child = pid_of(&status, "child_pid");
    assert_eq!(status_numbers(child, "Uid"), Some(vec![u64::from(uid); 4]));

    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), child, "{answer}");
    assert_eq!(answer["mode"], "supervised", "{answer}");
    assert_runs_as(&answer, uid, gid, &groups, &home);

    // A reload: the new child is nobody too; the supervisor is still root.
    let outcome = sup.run(&["--littleboss=reload"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
    let status = sup.status();
    let new_child = pid_of(&status, "child_pid");
    assert_ne!(new_child, child, "{status}");
    assert_eq!(pid_of(&status, "supervisor_pid"), sup_pid);
    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), new_child, "{answer}");
    assert_runs_as(&answer, uid, gid, &groups, &home);
    assert_eq!(status_numbers(sup_pid, "Uid"), Some(vec![0; 4]));
    wait_gone(child, "the old child");

    // A reload that moves the listener to another privileged port: the supervisor
    // (root) binds it, the new child (nobody) serves it.
    let (moved, third) = (0..5)
        .find_map(|_| {
            let port = free_privileged_port();
            let outcome = sup.run(&["--littleboss=reload", &format!("--http=127.0.0.1:{port}")]);
            if outcome.stderr.contains("address in use") {
                return None;
            }
            assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
            let status = sup.status();
            Some((
                SocketAddr::from(([127, 0, 0, 1], port)),
                pid_of(&status, "child_pid"),
            ))
        })
        .expect("a free privileged port for the reload");
    assert_ne!(third, new_child);
    let answer = get_json(moved);
    assert_eq!(pid_of(&answer, "pid"), third, "{answer}");
    assert_runs_as(&answer, uid, gid, &groups, &home);
    wait_gone(new_child, "the second child");
    wait_for(DEADLINE, "the first privileged port to be free", || {
        port_is_free(addr).then_some(())
    });

    sup.stop(&["--littleboss=stop"], "lbuser", &env.socket("lbuser"));
    wait_for(DEADLINE, "the privileged port to be free", || {
        port_is_free(moved).then_some(())
    });
}

#[test]
fn child_runs_as_nobody_from_a_binary_nobody_cannot_reach() {
    let test = "child_runs_as_nobody_from_a_binary_nobody_cannot_reach";
    if !root_or_skip(test) {
        return;
    }
    let Some((uid, _, _)) = passwd("nobody") else {
        skip(test, "no user nobody");
        return;
    };
    // The copy lives in a directory of root's, mode 0700: the supervisor runs it by
    // fd, so nobody never resolves its path.
    let env = Env::new();
    let private = env.path().join("private");
    std::fs::create_dir(&private).expect("mkdir");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let bin = env.copy_binary(bin!("lb-priv-user"), "private/lb-priv-user");
    assert!(
        !executable_by_others(&bin),
        "{} is reachable",
        bin.display()
    );
    let sup = Sup::spawn(
        &env,
        &bin,
        &[],
        &["--littleboss=start"],
        &["--littleboss=status-json"],
    );
    let status = sup.wait_running();
    let addr = listener_addr(&status, "http").unwrap_or_else(|| panic!("{status}"));
    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), pid_of(&status, "child_pid"));
    assert_eq!(numbers(&answer["uid"]), vec![u64::from(uid); 4], "{answer}");
    sup.stop(&["--littleboss=stop"], "lbuser", &env.socket("lbuser"));
}

#[test]
fn binary_nobody_cannot_execute_fails_the_start_clearly() {
    let test = "binary_nobody_cannot_execute_fails_the_start_clearly";
    if !root_or_skip(test) {
        return;
    }
    let env = Env::new();
    let bin = env.copy_binary(bin!("lb-priv-user"), "lb-priv-user");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let outcome = env.run(&bin, &["--littleboss=start"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "littleboss: lbuser: cannot start {}: permission denied",
            bin.display()
        )),
        "{outcome}"
    );
    assert!(!outcome.stderr.contains("serving http"), "{outcome}");
    assert!(!env.socket("lbuser").exists(), "{outcome}");
}

#[test]
fn unknown_user_or_group_fails_the_start() {
    for (vars, expected) in [
        (
            vec![("LB_PRIV_USER", "lbpriv-no-such-user")],
            "cannot run the child as user \"lbpriv-no-such-user\": no such user",
        ),
        (
            vec![
                ("LB_PRIV_USER", "root"),
                ("LB_PRIV_GROUP", "lbpriv-no-such-group"),
            ],
            "cannot run the child as group \"lbpriv-no-such-group\": no such group",
        ),
    ] {
        let env = Env::new();
        let mut args: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        args.push(shown(bin!("lb-priv-runas")));
        args.push("--littleboss=start".into());
        let outcome = env.run(Path::new(ENV), &args);
        assert_eq!(outcome.code(), Some(1), "{vars:?}: {outcome}");
        assert!(
            outcome
                .stderr
                .contains(&format!("littleboss: lbrunas: {expected}")),
            "{vars:?}: {outcome}"
        );
        assert!(!env.socket("lbrunas").exists(), "{outcome}");
    }
}

/// The builder documents that a mistake in what is declared is reported when the
/// program runs, with exit code 2 (the attribute refuses `group` without `user` at
/// compile time), whatever the mode.
#[test]
fn builder_group_without_user_is_a_declaration_error_in_every_mode() {
    let env = Env::new();
    let bin = bin!("lb-priv-runas");
    let vars = [("LB_PRIV_GROUP", "daemon".to_string())];
    let expected = "group \"daemon\" is set without a user";
    let mut wrong = Vec::new();
    for mode in ["--littleboss=start", "--littleboss=bypass"] {
        let process = spawn_with(&env, bin, &vars, &[mode]);
        let exited = process.wait_for("it to exit or to serve", || {
            if let Some(status) = process.try_exit() {
                return Some(Some(status));
            }
            process
                .stderr()
                .contains(" serving http on ")
                .then_some(None)
        });
        match exited.map(|status| status.code()) {
            None => wrong.push(format!(
                "{mode}: it serves although it declares a group without a user\n{}",
                process.logs()
            )),
            Some(code) if code != Some(2) || !process.stderr().contains(expected) => {
                wrong.push(format!(
                    "{mode}: exit code {code:?}, expected 2 and {expected:?}\n{}",
                    process.logs()
                ));
            }
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn group_option_sets_the_childs_group() {
    if !root_or_skip("group_option_sets_the_childs_group") {
        return;
    }
    let (Some((uid, _, home)), Some((nogroup, _))) = (passwd("nobody"), group("nogroup")) else {
        skip(
            "group_option_sets_the_childs_group",
            "no user nobody or group nogroup",
        );
        return;
    };
    let mut groups = member_gids("nobody");
    groups.insert(u64::from(nogroup));

    let env = Env::new();
    let (sup, status, port) = start_privileged(&env, bin!("lb-priv-group"), &[]);
    let answer = get_json(SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(
        pid_of(&answer, "pid"),
        pid_of(&status, "child_pid"),
        "{answer}"
    );
    assert_runs_as(&answer, uid, nogroup, &groups, &home);
    sup.stop(&["--littleboss=stop"], "lbgroup", &env.socket("lbgroup"));
}

#[test]
fn builder_group_other_than_the_users_primary_group() {
    let test = "builder_group_other_than_the_users_primary_group";
    if !root_or_skip(test) {
        return;
    }
    let (Some((uid, gid, home)), Some((daemon, _))) = (passwd("nobody"), group("daemon")) else {
        skip(test, "no user nobody or group daemon");
        return;
    };
    if daemon == gid {
        skip(test, "daemon is nobody's primary group");
        return;
    }
    // The group given, and the groups that list nobody as a member; not its primary
    // group, not root's.
    let mut groups = member_gids("nobody");
    groups.insert(u64::from(daemon));

    let env = Env::new();
    let vars = [
        ("LB_PRIV_USER", "nobody".to_string()),
        ("LB_PRIV_GROUP", "daemon".to_string()),
    ];
    let (sup, status, port) = start_privileged(&env, bin!("lb-priv-runas"), &vars);
    let answer = get_json(SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(
        pid_of(&answer, "pid"),
        pid_of(&status, "child_pid"),
        "{answer}"
    );
    assert_runs_as(&answer, uid, daemon, &groups, &home);
    sup.stop(&["--littleboss=stop"], "lbrunas", &env.socket("lbrunas"));
}

#[test]
fn supervisor_not_root_refuses_to_run_children_as_another_user() {
    let test = "supervisor_not_root_refuses_to_run_children_as_another_user";
    if !root_or_skip(test) {
        return;
    }
    let env = Env::new();
    let open = open_tempdir();
    let bin = runnable_by_nobody(bin!("lb-priv-root"), open.path());
    let dir = nobody_control_dir(open.path());
    let mut command = env.command(&bin);
    command
        .arg("--littleboss=start")
        .env("LITTLEBOSS_DIR", &dir)
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY);
    let outcome = run_for(command, COMMAND_TIMEOUT);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains("littleboss: lbroot: ")
            && outcome.stderr.contains("user \"root\"")
            && outcome.stderr.contains("not root"),
        "{outcome}"
    );
    assert!(!dir.join("lbroot.sock").exists(), "{outcome}");
    assert_eq!(
        std::fs::metadata(&dir)
            .expect("the control directory")
            .uid(),
        NOBODY
    );
}

#[test]
fn supervisor_not_root_may_name_its_own_user() {
    let test = "supervisor_not_root_may_name_its_own_user";
    if !root_or_skip(test) {
        return;
    }
    let Some((uid, gid, _)) = passwd("nobody") else {
        skip(test, "no user nobody");
        return;
    };
    if (uid, gid) != (NOBODY, NOBODY) || !Path::new(SETPRIV).exists() {
        skip(
            test,
            &format!("nobody is not {NOBODY}:{NOBODY}, or no {SETPRIV}"),
        );
        return;
    }
    let env = Env::new();
    let open = open_tempdir();
    let bin = runnable_by_nobody(bin!("lb-priv-user"), open.path());
    let dir = nobody_control_dir(open.path());
    // setpriv execs the supervisor as nobody (same pid), in the guard's process group.
    let setpriv_args = [
        format!("LITTLEBOSS_DIR={}", shown(&dir)),
        SETPRIV.to_string(),
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_string(),
        shown(&bin),
        "--littleboss=start".to_string(),
    ];
    let sup = Sup {
        env: &env,
        bin: bin.clone(),
        status_args: vec!["--littleboss=status-json".into()],
        client_as: Some((NOBODY, dir.clone())),
        process: env.spawn(Path::new(ENV), &setpriv_args),
    };
    let status = sup.wait_running();
    let sup_pid = pid_of(&status, "supervisor_pid");
    assert_eq!(sup_pid, sup.pid());
    assert_eq!(
        status_numbers(sup_pid, "Uid"),
        Some(vec![u64::from(NOBODY); 4])
    );
    let addr = listener_addr(&status, "http").unwrap_or_else(|| panic!("{status}"));
    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), pid_of(&status, "child_pid"));
    assert_eq!(
        numbers(&answer["uid"]),
        vec![u64::from(NOBODY); 4],
        "{answer}"
    );
    sup.stop(&["--littleboss=stop"], "lbuser", &dir.join("lbuser.sock"));
    assert!(is_gone(sup_pid));
}
