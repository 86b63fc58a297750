//! A renamed control flag, the mode taken from the program's own parser, what the child
//! receives as arguments, and the supervisor init hook.
//!
//! The helpers (`src/bin/lb-*.rs`) answer every HTTP request with a JSON report of
//! themselves: pid, mode, `lb.args()`, argv, uid, gid, groups, `HOME`, `USER`, `LOGNAME`
//! (see `littleboss_tests::report_support`).

use std::net::SocketAddr;
use std::path::Path;

use littleboss_tests::report_support::{
    CustomSupervisor, ENV, get_json, pid_of, shown, spawn_with, start_on_port,
};
use littleboss_tests::{Env, Value, bin, children_of, free_port, listener_addr, port_is_free};

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

/// `&["a", "b"]` as owned strings, to compare with [`strings`].
fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------
// 1. A renamed control flag
// ---------------------------------------------------------------------------------

#[test]
fn renamed_flag_starts_reports_and_stops_a_supervisor() {
    let env = Env::new();
    let bin = bin!("lb-flag-lb");
    // `--littleboss=stop` is the program's own argument here, and reaches it.
    let sup = CustomSupervisor::spawn(
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
    let bin = bin!("lb-flag-lb");
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
    let outcome = env.run(bin!("lb-flag-lb"), &["--lb=bogus"]);
    assert_eq!(outcome.code(), Some(2), "{outcome}");
    assert!(
        outcome.stderr.contains(
            "unknown mode \"bogus\" for --lb; the modes are bypass, start, dev, stop, reload, upgrade, status, status-json"
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
    let outcome = env.run(bin!("lb-clap"), &["--help"]);
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
    let bin = bin!("lb-clap");
    let sup = CustomSupervisor::spawn(
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
    let bin = bin!("lb-args");
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
    let sup = CustomSupervisor::spawn(&env, bin, &[], &args, &["--littleboss=status-json"]);
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
    let bin = bin!("lb-args");
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

/// Starts `lb-init` supervised on a free port, with its logs at `init_log` and
/// `child_log` (and, if given, `LB_PRIV_INIT_FAIL`).
fn start_init<'e>(
    env: &'e Env,
    init_log: &Path,
    child_log: &Path,
) -> (CustomSupervisor<'e>, Value, u16) {
    start_on_port(free_port, |port| {
        let vars = [
            ("LB_PRIV_INIT_LOG", shown(init_log)),
            ("LB_PRIV_CHILD_LOG", shown(child_log)),
            ("LB_PRIV_INIT_PORT", port.to_string()),
        ];
        let http = format!("--http=127.0.0.1:{port}");
        CustomSupervisor::spawn(
            env,
            bin!("lb-init"),
            &vars,
            &["--littleboss=start", &http],
            &["--littleboss=status-json"],
        )
    })
}

#[test]
fn supervisor_init_runs_once_per_start_in_the_supervisor_after_binding() {
    let env = Env::new();
    let bin = bin!("lb-init");
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
    let process = spawn_with(&env, bin!("lb-init"), &vars, &[]);
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
                shown(bin!("lb-init")),
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
    let outcome = env.run(bin!("lb-init"), &["--littleboss=status-json"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
}
