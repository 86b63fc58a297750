//! Picks the mode from the command line and runs it.

use std::ffi::OsString;
use std::process::ExitCode;

use littleboss_rules::names::{self, NameError};
use littleboss_rules::wait::{Wait, WaitError};

use crate::config::{Config, SupervisorInit};
use crate::context::{Context, Mode, Moving, Standing};
use crate::error::{Error, Failed};
use crate::flags::{self, Command, Flags};
use crate::output::errln;
use crate::socket::activation;
use crate::spec::{ListenerSpec, SpecError};
use crate::{bypass, child, child_panic, commands, environ, supervisor};

/// Exit code for a command line or declaration littleboss cannot accept.
const USAGE: u8 = 2;

/// The entry point behind [`Littleboss::run`](crate::Littleboss::run), `run_sync` and
/// their `try_` forms: the exit code of whatever ran, or the failure that kept it from
/// running, which `run` prints and `try_run` returns.
pub(crate) fn run(
    config: Config,
    init: Option<SupervisorInit>,
    main: impl FnOnce(Context) -> Result<(), String>,
) -> Result<ExitCode, Failed> {
    // First: the environment, read once and never changed; from it, the child's
    // channel and systemd's sockets.
    environ::at_start();
    // An upgrade's probe, or the supervisor's next image: neither is anything else.
    if environ::var(environ::PROBE_ENV).is_some() {
        return Ok(ExitCode::from(supervisor::answer_probe(&config)));
    }
    if let Some(code) = supervisor::resume(&config) {
        return Ok(code);
    }
    let channel = child::take_channel();
    let activated = activation::take();
    validate(&config).map_err(|e| {
        let line = format!("littleboss: {e}");
        Failed::new(Error::config(e), line, USAGE)
    })?;
    match channel {
        Some(Ok(fd)) => return run_child(&config, fd, main),
        Some(Err(e)) => {
            let line = format!("littleboss: {}: {e}", config.name);
            return Err(Failed::new(Error::config(e), line, 1));
        }
        None => {}
    }
    let flags = parse_flags(&config).map_err(|e| {
        let line = format!("littleboss: {e}");
        Failed::new(Error::config(e), line, USAGE).with_more(usage(&config))
    })?;
    let specs = listener_specs(&config, &flags).map_err(|e| {
        let line = format!("littleboss: {e}");
        Failed::new(Error::config(e), line, USAGE)
    })?;
    if let Some(missing) = missing_feature(&config, flags.command, cfg!(feature = "metrics")) {
        let line = format!("littleboss: {missing}");
        return Err(Failed::new(Error::config(missing), line, USAGE));
    }
    match flags.command {
        Command::Bypass => run_bypass(&specs, &config, activated, flags.args, main),
        Command::Start => supervisor::start(config, init, specs, activated, flags.args),
        Command::Dev => supervisor::dev(config, init, specs, activated, flags.args),
        // Every other mode asks a running supervisor: what it asks and prints is in
        // `commands`, so that a new control command leaves this file alone.
        _ => commands::run(&config, &flags),
    }
}

fn run_child(
    config: &Config,
    fd: std::os::fd::OwnedFd,
    main: impl FnOnce(Context) -> Result<(), String>,
) -> Result<ExitCode, Failed> {
    // Before any thread: the fds of a state or a reload's connections arrive later,
    // inside the runtime.
    crate::sys::reserve_fd_table(std::os::fd::AsFd::as_fd(&fd));
    let joined = child::join(config, fd).map_err(|e| {
        let line = format!("littleboss: {}: {e}", config.name);
        Failed::new(Error::io("joining the supervisor", e), line, 1)
    })?;
    let link = joined.link.clone();
    // The supervisor passes the listener flags as bound; the program's arguments are
    // the rest.
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let args = flags::parse(argv.clone(), &config.flag, &names).map_or(argv, |f| f.args);
    let ctx = Context::new(
        Mode::Supervised,
        joined.slots,
        joined.lameduck,
        joined.standing,
        Some(Box::new(joined.link)),
        Some(Moving {
            moves: joined.moves,
            state: joined.state,
        }),
        args,
    );
    // What the HTTP helpers counted last goes before the end.
    #[cfg(feature = "hyper")]
    let counted = ctx.clone();
    let result = child_panic::run(&link, || main(ctx));
    #[cfg(feature = "hyper")]
    counted.report_counts();
    link.finished(&result);
    Ok(finish(result))
}

fn run_bypass(
    specs: &[(String, ListenerSpec)],
    config: &Config,
    activated: activation::Activated,
    args: Vec<OsString>,
    main: impl FnOnce(Context) -> Result<(), String>,
) -> Result<ExitCode, Failed> {
    let slots = bypass::bind_all(specs, config, activated).map_err(|e| {
        let line = format!("littleboss: {e}");
        Failed::new(e, line, 1)
    })?;
    let lameduck = match bypass::watch_signals() {
        Ok(rx) => rx,
        Err(code) => return Ok(code),
    };
    // Bypass mode never stands by nor is on probation.
    let (_, standing) = tokio::sync::watch::channel(Standing::default());
    Ok(finish(main(Context::new(
        Mode::Bypass,
        slots,
        lameduck,
        standing,
        None,
        None,
        args,
    ))))
}

/// An `Err` from main prints as `Error: ...` and exits 1, as a plain `main` does.
fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line, with the mode and addresses the program's own parser gave, if any.
fn parse_flags(config: &Config) -> Result<Flags, flags::FlagError> {
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    let mut flags = flags::parse(std::env::args_os().collect(), &config.flag, &names)?;
    if let Some(mode) = &config.command {
        flags.command = flags::mode(&config.flag, mode)?;
    }
    flags.listeners.extend(config.addresses.iter().cloned());
    Ok(flags)
}

/// Checks what the program declared, by the rules the attribute applies at compile time
/// (`littleboss-rules`), so a builder's mistakes read as the attribute's do.
fn validate(config: &Config) -> Result<(), DeclareError> {
    names::check_service_name(&config.name)?;
    let flag = &config.flag;
    names::check_flag_name(flag)?;
    for (wait, value) in [
        (Wait::Lameduck, config.lameduck),
        (Wait::Settle, config.settle),
        (Wait::ReadyTimeout, config.ready_timeout),
        (Wait::Probation, config.probation),
    ] {
        wait.check(value)?;
    }
    if let Some(state_timeout) = config.state_timeout {
        Wait::StateTimeout.check(state_timeout)?;
        littleboss_rules::wait::check_state_timeout(state_timeout, config.ready_timeout)?;
    }
    if let Some(pct) = config.probation_5xx {
        littleboss_rules::share::check(pct)?;
    }
    if let (Some(_), None) = (&config.group, &config.user) {
        return Err(DeclareError::GroupWithoutUser);
    }
    if let Some(metrics) = &config.metrics {
        let declared: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
        if !declared.contains(metrics) {
            return Err(DeclareError::Metrics(names::metrics_not_declared(
                metrics, &declared,
            )));
        }
    }
    for (i, declared) in config.listeners.iter().enumerate() {
        let lname = &declared.name;
        names::check_listener_name(lname, flag)?;
        if config.listeners[..i].iter().any(|l| &l.name == lname) {
            return Err(NameError::Duplicate {
                name: lname.clone(),
            }
            .into());
        }
        if let Err(e) = &declared.spec {
            return Err(DeclareError::Listener {
                listener: lname.clone(),
                source: e.clone(),
            });
        }
    }
    Ok(())
}

/// What a supervisor (`command` start or dev) of this build would need and lacks: the
/// `metrics` feature (`with_metrics`) when the program names a metrics listener. The
/// attribute cannot see the runtime's features, so this is said when it starts.
fn missing_feature(config: &Config, command: Command, with_metrics: bool) -> Option<&'static str> {
    let supervises = matches!(command, Command::Start | Command::Dev);
    (supervises && config.metrics.is_some() && !with_metrics).then_some(crate::config::NO_METRICS)
}

/// Each declared listener's spec, with the address its flag gives, if any.
fn listener_specs(
    config: &Config,
    flags: &Flags,
) -> Result<Vec<(String, ListenerSpec)>, DeclareError> {
    config
        .listeners
        .iter()
        .map(|declared| {
            let mut spec = declared.spec.clone()?;
            if let Some((_, addr)) = flags
                .listeners
                .iter()
                .rev()
                .find(|(n, _)| *n == declared.name)
            {
                spec = ListenerSpec::with_address(spec.network, addr).map_err(|source| {
                    DeclareError::Flag {
                        listener: declared.name.clone(),
                        source,
                    }
                })?;
            }
            Ok((declared.name.clone(), spec))
        })
        .collect()
}

/// What the program declared (with the listener addresses its command line gives) that
/// littleboss cannot accept, in the words of the rule it breaks.
#[derive(Debug, thiserror::Error)]
enum DeclareError {
    /// A service, flag or listener name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A lameduck, settle, ready timeout, probation or state timeout.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// A `probation_5xx` share outside 1 to 100.
    #[error(transparent)]
    Share(#[from] littleboss_rules::share::ShareError),
    /// A group to run as, with no user.
    #[error("{}", littleboss_rules::user::GROUP_WITHOUT_USER)]
    GroupWithoutUser,
    /// `metrics = "NAME"` with no listener `NAME`.
    #[error("{0}")]
    Metrics(String),
    /// A listener's declared spec.
    #[error("listener {listener}: {source}")]
    Listener { listener: String, source: SpecError },
    /// The address a listener's flag gives.
    #[error("flag --{listener}: {source}")]
    Flag { listener: String, source: SpecError },
    /// A declared spec that [`validate`] did not see.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// The name the program was run as, for messages.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "program".to_string())
}

/// The usage text: the modes and the listener flags.
pub(crate) fn usage(config: &Config) -> String {
    let mut out = format!(
        "usage: {} [--{}=MODE] [--LISTENER=ADDR ...] [ARGS...]\n  modes: {} (default bypass: run directly)\n",
        program_name(),
        config.flag,
        flags::mode_list()
    );
    for declared in &config.listeners {
        if let Ok(spec) = &declared.spec {
            out.push_str(&format!(
                "  --{}=ADDR  {} listener (default {:?}; empty turns it off)\n",
                declared.name,
                spec.network,
                spec.address.as_deref().unwrap_or("")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Littleboss, MAX_WAIT as MAX};

    fn refusal(lb: Littleboss) -> Option<String> {
        validate(&lb.into_config()).err().map(|e| e.to_string())
    }

    #[test]
    fn refuses_what_the_attribute_refuses() {
        let lb = || Littleboss::new("svc").listener("http", "tcp::0");
        let cases: Vec<(Littleboss, Option<&str>)> = vec![
            (lb(), None),
            (lb().lameduck(MAX), None),
            (lb().settle(Duration::ZERO).lameduck(Duration::ZERO), None),
            (
                lb().lameduck(Duration::MAX),
                Some(
                    "lameduck of 18446744073709551615.999999999s is longer than the maximum of 60m (one hour)",
                ),
            ),
            (
                lb().settle(MAX + Duration::from_millis(1)),
                Some("settle of 3600.001s is longer than the maximum of 60m (one hour)"),
            ),
            (
                lb().ready_timeout(Duration::ZERO),
                Some(
                    "ready_timeout of 0ns would fail every child before it could say hello; the shortest is 1ms",
                ),
            ),
            (lb().probation(MAX).probation_5xx(100).standby(false), None),
            (lb().state_timeout(Duration::from_secs(30)), None),
            (
                lb().ready_timeout(Duration::from_secs(10))
                    .state_timeout(Duration::from_millis(10_001)),
                Some(
                    "state_timeout of 10001ms is longer than ready_timeout of 10s; the new process takes its state before it is ready, so state_timeout is at most ready_timeout",
                ),
            ),
            (
                lb().state_timeout(Duration::from_secs(31)),
                Some(
                    "state_timeout of 31s is longer than ready_timeout of 30s; the new process takes its state before it is ready, so state_timeout is at most ready_timeout",
                ),
            ),
            (
                lb().state_timeout(Duration::ZERO),
                Some(
                    "state_timeout of 0ns would fail every take_state before its answer could come; the shortest is 1ms",
                ),
            ),
            // No state_timeout declared: the default fits a short ready_timeout.
            (lb().ready_timeout(Duration::from_secs(1)), None),
            (
                lb().probation(MAX + Duration::from_millis(1)),
                Some("probation of 3600.001s is longer than the maximum of 60m (one hour)"),
            ),
            (
                lb().probation_5xx(0),
                Some(
                    "probation_5xx of \"0%\" is not a share from 1% to 100%; write an integer followed by %, as in \"5%\"",
                ),
            ),
            (
                Littleboss::new("my blog"),
                Some(
                    "invalid service name \"my blog\": a name is one or more of A-Z, a-z, 0-9, '_' and '-'",
                ),
            ),
            (
                lb().flag("--lb"),
                Some(
                    "invalid control flag name \"--lb\": it may not start with '-', since the dashes of a flag are not part of its name (\"lb\" gives --lb=MODE)",
                ),
            ),
            (
                lb().listener("-dns", "udp::53"),
                Some(
                    "invalid listener name \"-dns\": it may not start with '-', since the dashes of a flag are not part of its name (\"dns\" gives --dns=ADDR)",
                ),
            ),
            (
                lb().flag("http"),
                Some(
                    "listener name \"http\" is taken by the --http control flag; choose another name",
                ),
            ),
            (
                lb().listener("http", "tcp::1"),
                Some("listener \"http\" declared twice"),
            ),
            (lb().metrics("http"), None),
            (
                lb().metrics("stats"),
                Some(
                    "`metrics` names listener `stats`, which is not declared (the listeners are `http`); declare it, as in `listener(stats = \"tcp:127.0.0.1:9100\")`",
                ),
            ),
            (
                lb().listener("dns", "udp:53"),
                Some(
                    "listener dns: address \"53\" is not HOST:PORT, :PORT or [IPV6]:PORT; for port 53 on every address, write \":53\"",
                ),
            ),
        ];
        for (lb, expected) in cases {
            let shown = format!("{lb:?}");
            assert_eq!(refusal(lb).as_deref(), expected, "{shown}");
        }
    }

    #[test]
    fn a_supervisor_of_a_build_without_the_metrics_feature_says_which_to_enable() {
        let config = Littleboss::new("svc")
            .listener("metrics", "tcp:127.0.0.1:0")
            .metrics("metrics")
            .into_config();
        for command in [Command::Start, Command::Dev] {
            let missing = missing_feature(&config, command, false);
            assert_eq!(missing, Some(crate::config::NO_METRICS));
            assert!(missing.is_some_and(|m| m.contains("features = [\"metrics\"]")));
            assert_eq!(missing_feature(&config, command, true), None);
        }
        // Bypass mode does not bind it, and the commands only ask.
        for command in [Command::Bypass, Command::Status, Command::Metrics] {
            assert_eq!(missing_feature(&config, command, false), None);
        }
        let plain = Littleboss::new("svc").into_config();
        assert_eq!(missing_feature(&plain, Command::Start, false), None);
    }
}
