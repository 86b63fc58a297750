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

/// The variable that gives the child its end of the channel.
pub(crate) const CHANNEL_ENV: &str = "LITTLEBOSS_CHANNEL_FD";

/// The variable that names the supervisor whose child the channel is for: a process
/// whose parent is another one (a program the child started) ignores the channel
/// variable it inherited.
pub(crate) const SUPERVISOR_PID_ENV: &str = "LITTLEBOSS_SUPERVISOR_PID";

/// The variable in which a supervisor gives its child the protocol versions it speaks
/// (`1-3`); a supervisor of protocol 1 sets none.
pub(crate) const VERSIONS_ENV: &str = "LITTLEBOSS_PROTOCOLS";

/// The variable that gives the supervisor's new image the handover's fd.
pub(crate) const HANDOVER_ENV: &str = "LITTLEBOSS_HANDOVER_FD";

/// The variable that names the process the handover is for: the same pid, since exec
/// keeps it; a process that inherited the variables by mistake ignores them.
pub(crate) const HANDOVER_PID_ENV: &str = "LITTLEBOSS_HANDOVER_PID";

/// The variable that makes a littleboss program answer the upgrade's probe and exit.
pub(crate) const PROBE_ENV: &str = "LITTLEBOSS_UPGRADE_PROBE";

/// `LITTLEBOSS_PORTABLE=1`: on Linux, take the paths that macOS takes (see
/// [`sys`](crate::sys)).
pub(crate) const PORTABLE_ENV: &str = "LITTLEBOSS_PORTABLE";

/// Test hook: narrows the protocol versions this build speaks (`1`, `2`, `1-2`).
pub(crate) const TEST_PROTOCOLS_ENV: &str = "LITTLEBOSS_TEST_PROTOCOLS";

/// Test hook: the upgrade state version this build reads instead of its own.
pub(crate) const TEST_STATE_VERSION_ENV: &str = "LITTLEBOSS_TEST_STATE_VERSION";

/// Test hook: the most connections on their way to the serving child at once.
pub(crate) const TEST_MOVE_CAP_ENV: &str = "LITTLEBOSS_TEST_MOVE_CAP";

/// Test hook: how long, in ms, the serving child has to take a forwarded connection.
pub(crate) const TEST_TAKE_MS_ENV: &str = "LITTLEBOSS_TEST_TAKE_MS";

/// Every test hook. A build without the `test-hooks` feature reads none of them, and
/// a supervisor never gives them to its children.
pub(crate) const TEST_HOOKS: &[&str] = &[
    TEST_PROTOCOLS_ENV,
    TEST_STATE_VERSION_ENV,
    TEST_MOVE_CAP_ENV,
    TEST_TAKE_MS_ENV,
];

/// Variables a child never inherits, besides the [`TEST_HOOKS`]: the channel of the
/// supervisor's own supervisor, if any (a child gets its own), what an upgrade handed
/// this process, and systemd's, which were meant for the supervisor.
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

/// Test hook `name` (one of [`TEST_HOOKS`]) as it was at start, in a build with the
/// `test-hooks` feature; `None` in any other build, whatever the environment says, so
/// that a variable left in a production environment changes nothing.
pub(crate) fn test_hook(name: &str) -> Option<&'static OsStr> {
    debug_assert!(TEST_HOOKS.contains(&name), "{name} is not a test hook");
    if cfg!(feature = "test-hooks") {
        var(name)
    } else {
        None
    }
}

/// Test hook `name` parsed, if it is set (see [`test_hook`]) and parses.
pub(crate) fn test_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    test_hook(name)?.to_str()?.parse().ok()
}

/// The test hooks set at start, which the upgrade's probe inherits (it stands for
/// the supervisor's next image, which keeps the whole environment).
pub(crate) fn test_hooks_set() -> impl Iterator<Item = (&'static OsStr, &'static OsStr)> {
    at_start()
        .iter()
        .filter(|(key, _)| TEST_HOOKS.iter().any(|name| key == name))
        .map(|(key, value)| (key.as_os_str(), value.as_os_str()))
}

/// What a child inherits: the environment at start without [`NOT_INHERITED`] and
/// [`TEST_HOOKS`].
pub(crate) fn inherited() -> impl Iterator<Item = (&'static OsStr, &'static OsStr)> {
    inherited_from(at_start())
}

fn inherited_from(vars: &[(OsString, OsString)]) -> impl Iterator<Item = (&OsStr, &OsStr)> {
    vars.iter()
        .filter(|(key, _)| {
            !NOT_INHERITED
                .iter()
                .chain(TEST_HOOKS)
                .any(|name| key == name)
        })
        .map(|(key, value)| (key.as_os_str(), value.as_os_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_inherits_everything_but_littleboss_systemd_and_test_variables() {
        let vars: Vec<(OsString, OsString)> = [
            ("PATH", "/usr/bin"),
            ("LITTLEBOSS_CHANNEL_FD", "3"),
            ("LITTLEBOSS_SUPERVISOR_PID", "42"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "42"),
            ("LISTEN_FDNAMES", "http"),
            ("LITTLEBOSS_DIR", "/run/lb"),
            ("LITTLEBOSS_TEST_PROTOCOLS", "1"),
            ("LITTLEBOSS_TEST_TAKE_MS", "300"),
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
