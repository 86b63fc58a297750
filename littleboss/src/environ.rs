//! The process environment, read once when `run` starts and never changed.
//!
//! littleboss calls neither `set_var` nor `remove_var`: once threads exist (and
//! [`Littleboss::run`](crate::Littleboss::run) may be called from any program) changing
//! the environment is unsound. It reads the variables meant for it from this snapshot,
//! keeps what they said, and gives each child an explicit environment instead: the
//! snapshot without the variables meant for littleboss ([`NOT_INHERITED`]), plus the
//! child's own channel.

use std::ffi::{OsStr, OsString};
use std::sync::OnceLock;

use crate::channel::{CHANNEL_ENV, SUPERVISOR_PID_ENV};
use crate::control::protocol::VERSIONS_ENV;
use crate::supervisor::{HANDOVER_ENV, HANDOVER_PID_ENV, PROBE_ENV};

/// Variables a child never inherits: the channel of the supervisor's own supervisor,
/// if any (a child gets its own), what an upgrade handed this process, and systemd's,
/// which were meant for the supervisor.
pub(crate) const NOT_INHERITED: &[&str] = &[
    CHANNEL_ENV,
    SUPERVISOR_PID_ENV,
    VERSIONS_ENV,
    HANDOVER_ENV,
    HANDOVER_PID_ENV,
    PROBE_ENV,
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

static AT_START: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();

/// The environment as it was when littleboss first looked (the start of `run`).
pub(crate) fn at_start() -> &'static [(OsString, OsString)] {
    AT_START.get_or_init(|| std::env::vars_os().collect())
}

/// Variable `name` as it was at start.
pub(crate) fn var(name: &str) -> Option<&'static OsStr> {
    at_start()
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_os_str())
}

/// What a child inherits: the environment at start without [`NOT_INHERITED`].
pub(crate) fn inherited() -> impl Iterator<Item = (&'static OsStr, &'static OsStr)> {
    inherited_from(at_start())
}

fn inherited_from(vars: &[(OsString, OsString)]) -> impl Iterator<Item = (&OsStr, &OsStr)> {
    vars.iter()
        .filter(|(key, _)| !NOT_INHERITED.iter().any(|name| key == name))
        .map(|(key, value)| (key.as_os_str(), value.as_os_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_inherits_everything_but_littleboss_and_systemd_variables() {
        let vars: Vec<(OsString, OsString)> = [
            ("PATH", "/usr/bin"),
            ("LITTLEBOSS_CHANNEL_FD", "3"),
            ("LITTLEBOSS_SUPERVISOR_PID", "42"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "42"),
            ("LISTEN_FDNAMES", "http"),
            ("LITTLEBOSS_DIR", "/run/lb"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let kept: Vec<(&OsStr, &OsStr)> = inherited_from(&vars).collect();
        assert_eq!(
            kept,
            [
                (OsStr::new("PATH"), OsStr::new("/usr/bin")),
                (OsStr::new("LITTLEBOSS_DIR"), OsStr::new("/run/lb")),
            ]
        );
    }
}
