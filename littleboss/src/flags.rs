//! The command line: which flags are littleboss's and which are passed on.
//!
//! littleboss owns `--littleboss=MODE` and one flag per declared listener,
//! `--NAME=ADDR`. Each may be written with one or two dashes, and with `=` or as two
//! arguments (`--littleboss start`), as Go's flag package accepts. Everything else, and
//! everything after a `--`, belongs to the program and reaches it unchanged through
//! [`Context::args`](crate::Context::args). In `reload` mode, the arguments after `--`
//! are the new child's arguments.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// The control flag's default name.
pub(crate) const FLAG: &str = littleboss_rules::names::DEFAULT_FLAG;

/// What `--littleboss=MODE` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Bypass,
    Start,
    /// A supervisor, as `start`, that also reloads to each new build of its executable.
    Dev,
    Stop,
    Reload,
    /// A reload, then the supervisor re-executes itself as the new binary.
    Upgrade,
    Status,
    StatusJson,
    /// Ends the probation under way as passed.
    Promote,
    /// Ends the probation under way as failed: the old child serves again.
    Rollback,
    /// The supervisor's journal, a line per event.
    History,
    /// The journal as JSON.
    HistoryJson,
    /// The metrics, in the Prometheus text format.
    Metrics,
}

/// The modes as they are spelled on the command line.
pub(crate) const MODES: &[(&str, Command)] = &[
    ("bypass", Command::Bypass),
    ("start", Command::Start),
    ("dev", Command::Dev),
    ("stop", Command::Stop),
    ("reload", Command::Reload),
    ("upgrade", Command::Upgrade),
    ("status", Command::Status),
    ("status-json", Command::StatusJson),
    ("promote", Command::Promote),
    ("rollback", Command::Rollback),
    ("history", Command::History),
    ("history-json", Command::HistoryJson),
    ("metrics", Command::Metrics),
];

/// The command line, split into littleboss's part and the program's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Flags {
    pub command: Command,
    /// Listener addresses given as flags, in order: `(name, address)`; empty means off.
    pub listeners: Vec<(String, String)>,
    /// The program name and the arguments that are not littleboss's.
    pub args: Vec<OsString>,
    /// In reload mode, the arguments after `--` (the new child's), if a `--` was given.
    pub reload_args: Option<Vec<OsString>>,
}

/// A command line that littleboss cannot accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FlagError {
    /// The mode given to the control flag (named first) is not one of [`MODES`].
    UnknownMode(String, String),
    MissingValue(String),
    NotUtf8(String),
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagError::UnknownMode(flag, mode) => write!(
                f,
                "unknown mode {mode:?} for --{flag}; the modes are {}",
                mode_list()
            ),
            FlagError::MissingValue(flag) => write!(f, "flag --{flag} needs a value"),
            FlagError::NotUtf8(flag) => write!(f, "the value of flag --{flag} is not UTF-8"),
        }
    }
}

/// `bypass, start, dev, stop, reload, status, status-json`.
pub(crate) fn mode_list() -> String {
    MODES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a mode as the control flag `flag` gives it; empty means bypass.
pub(crate) fn mode(flag: &str, mode: &str) -> Result<Command, FlagError> {
    if mode.is_empty() {
        return Ok(Command::Bypass);
    }
    MODES
        .iter()
        .find(|(name, _)| *name == mode)
        .map(|(_, command)| *command)
        .ok_or_else(|| FlagError::UnknownMode(flag.to_string(), mode.to_string()))
}

/// Splits `argv` (program name first) into littleboss's flags (the control flag `flag`
/// and one per listener) and the program's arguments.
pub(crate) fn parse(
    argv: Vec<OsString>,
    flag: &str,
    listener_names: &[&str],
) -> Result<Flags, FlagError> {
    let mut argv = argv.into_iter();
    let mut args: Vec<OsString> = argv.next().into_iter().collect();
    let mut mode: Option<String> = None;
    let mut listeners = Vec::new();
    let mut after_dashes: Option<Vec<OsString>> = None;
    while let Some(arg) = argv.next() {
        if arg == "--" {
            after_dashes = Some(argv.by_ref().collect());
            break;
        }
        let parsed = split_flag(&arg)
            .map(|(name, value)| (name.to_string(), value.map(OsStr::to_os_string)));
        let Some((name, inline)) =
            parsed.filter(|(name, _)| name == flag || listener_names.contains(&name.as_str()))
        else {
            args.push(arg);
            continue;
        };
        let value = match inline {
            Some(value) => value,
            None => argv
                .next()
                .ok_or_else(|| FlagError::MissingValue(name.clone()))?,
        };
        let value = value
            .into_string()
            .map_err(|_| FlagError::NotUtf8(name.clone()))?;
        if name == flag {
            mode = Some(value);
        } else {
            listeners.push((name, value));
        }
    }
    let command = match mode {
        None => Command::Bypass,
        Some(value) if value.is_empty() => {
            return Err(FlagError::UnknownMode(flag.to_string(), value));
        }
        Some(value) => self::mode(flag, &value)?,
    };
    let mut reload_args = None;
    if let Some(rest) = after_dashes {
        if matches!(command, Command::Reload | Command::Upgrade) {
            let mut new_args: Vec<OsString> = args.first().cloned().into_iter().collect();
            new_args.extend(rest);
            reload_args = Some(new_args);
        } else {
            args.push("--".into());
            args.extend(rest);
        }
    }
    Ok(Flags {
        command,
        listeners,
        args,
        reload_args,
    })
}

/// `--name=value` -> (`name`, Some(`value`)); `-name` -> (`name`, None); else None.
fn split_flag(arg: &OsStr) -> Option<(&str, Option<&OsStr>)> {
    let bytes = arg.as_bytes();
    let body = bytes
        .strip_prefix(b"--")
        .or_else(|| bytes.strip_prefix(b"-"))?;
    let (name, value) = match body.iter().position(|&b| b == b'=') {
        Some(eq) => (&body[..eq], Some(OsStr::from_bytes(&body[eq + 1..]))),
        None => (body, None),
    };
    let name = std::str::from_utf8(name).ok()?;
    if name.is_empty() || name.starts_with('-') {
        return None;
    }
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn parse_ok(args: &[&str]) -> Flags {
        parse(argv(args), FLAG, &["http", "dns"]).unwrap()
    }

    #[test]
    fn modes_in_every_spelling() {
        for form in [
            &["prog", "--littleboss=start"][..],
            &["prog", "-littleboss=start"],
            &["prog", "--littleboss", "start"],
            &["prog", "-littleboss", "start"],
        ] {
            let flags = parse_ok(form);
            assert_eq!(flags.command, Command::Start, "{form:?}");
            assert_eq!(flags.args, argv(&["prog"]));
        }
        assert_eq!(parse_ok(&["prog"]).command, Command::Bypass);
        assert_eq!(
            parse_ok(&["prog", "--littleboss=status-json"]).command,
            Command::StatusJson
        );
        assert_eq!(
            parse_ok(&["prog", "--littleboss=dev"]).command,
            Command::Dev
        );
    }

    #[test]
    fn listener_flags_are_taken_and_the_rest_passed_on() {
        let flags = parse_ok(&[
            "prog",
            "-v",
            "--http=:0",
            "--other=1",
            "-dns",
            "127.0.0.1:53",
            "file",
        ]);
        assert_eq!(
            flags.listeners,
            vec![
                ("http".to_string(), ":0".to_string()),
                ("dns".to_string(), "127.0.0.1:53".to_string())
            ]
        );
        assert_eq!(flags.args, argv(&["prog", "-v", "--other=1", "file"]));
        let off = parse_ok(&["prog", "--http="]);
        assert_eq!(off.listeners, vec![("http".to_string(), String::new())]);
    }

    #[test]
    fn double_dash_ends_flags() {
        let flags = parse_ok(&["prog", "--", "--littleboss=stop", "--http=:1"]);
        assert_eq!(flags.command, Command::Bypass);
        assert!(flags.listeners.is_empty());
        assert_eq!(
            flags.args,
            argv(&["prog", "--", "--littleboss=stop", "--http=:1"])
        );
        let reload = parse_ok(&["prog", "--littleboss=reload", "--http=:2", "--", "-x", "y"]);
        assert_eq!(reload.command, Command::Reload);
        assert_eq!(reload.reload_args, Some(argv(&["prog", "-x", "y"])));
        assert_eq!(reload.args, argv(&["prog"]));
    }

    #[test]
    fn renamed_flag() {
        let flags = parse(argv(&["p", "--lb=start", "--littleboss=stop"]), "lb", &[]).unwrap();
        assert_eq!(flags.command, Command::Start);
        assert_eq!(flags.args, argv(&["p", "--littleboss=stop"]));
        assert_eq!(mode("lb", ""), Ok(Command::Bypass));
        assert_eq!(mode("lb", "reload"), Ok(Command::Reload));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(argv(&["p", "--littleboss=go"]), FLAG, &[]).unwrap_err(),
            FlagError::UnknownMode(FLAG.into(), "go".into())
        );
        assert_eq!(
            parse(argv(&["p", "--http"]), FLAG, &["http"]).unwrap_err(),
            FlagError::MissingValue("http".into())
        );
        let msg = FlagError::UnknownMode(FLAG.into(), "go".into()).to_string();
        assert!(
            msg.contains("bypass, start, dev, stop, reload, upgrade, status, status-json"),
            "{msg}"
        );
    }
}
