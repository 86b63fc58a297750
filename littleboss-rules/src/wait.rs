//! The waits a program declares: `lameduck`, `settle`, `ready_timeout`, `probation` and
//! `state_timeout`.
//!
//! In the attribute a wait is a string, an integer followed by `ms`, `s` or `m`
//! (`"250ms"`, `"2s"`, `"1m"`); the builder takes a [`Duration`]. Either way it may be
//! at most [`MAX_WAIT`], one hour: the supervisor adds each wait to the current
//! [`Instant`](std::time::Instant), which panics past the clock's range (as
//! `Duration::MAX` would), and no reload should hang on a child for longer than an
//! hour. The supervisor caps what a child declares in its hello at the same hour, so a
//! child built with other rules cannot make it wait longer either.
//!
//! Zero is accepted where it means something: a `lameduck` of zero kills a winding-down
//! child at once, a `settle` of zero makes a child ready as soon as it has said hello,
//! a `probation` of zero (the default) has a reload done once the new child is ready.
//! A `ready_timeout` of zero is refused, and so is one under a millisecond
//! ([`MIN_READY_TIMEOUT`]): the supervisor waits that long for a child's hello too, so
//! every child would fail before it could start. So is a `state_timeout` under a
//! millisecond: every `take_state` would fail before the answer could come.
//!
//! A `state_timeout` is at most the `ready_timeout` ([`check_state_timeout`]): the new
//! process takes its state before it is ready, so a longer wait for the state would
//! outlast the wait for the process. A program that declares none waits
//! [`DEFAULT_STATE_TIMEOUT`], or its `ready_timeout` if that is shorter
//! ([`state_timeout`]).

use std::fmt;
use std::time::Duration;

/// The longest `lameduck`, `settle`, `ready_timeout`, `probation` or `state_timeout`:
/// one hour.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The shortest `ready_timeout` (and `state_timeout`): the child's hello says it in
/// whole milliseconds, so anything shorter is zero there.
pub const MIN_READY_TIMEOUT: Duration = Duration::from_millis(1);

/// The `ready_timeout` of a program that declares none.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `state_timeout` of a program that declares none (unless its `ready_timeout` is
/// shorter: see [`state_timeout`]).
pub const DEFAULT_STATE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a new child's `take_state` waits for the state of the process it replaces:
/// the `state_timeout` it declared, else [`DEFAULT_STATE_TIMEOUT`] or its
/// `ready_timeout`, whichever is shorter (so that a program with a short
/// `ready_timeout` and no `state_timeout` is not refused).
///
/// ```
/// use std::time::Duration;
/// use littleboss_rules::wait::state_timeout;
/// let secs = Duration::from_secs;
/// assert_eq!(state_timeout(None, secs(30)), secs(5));
/// assert_eq!(state_timeout(None, secs(1)), secs(1));
/// assert_eq!(state_timeout(Some(secs(20)), secs(30)), secs(20));
/// ```
pub fn state_timeout(declared: Option<Duration>, ready_timeout: Duration) -> Duration {
    declared.unwrap_or(DEFAULT_STATE_TIMEOUT.min(ready_timeout))
}

/// Checks a declared `state_timeout` against the `ready_timeout`: it is at most that
/// long, since the new process takes its state before it is ready. The error names
/// both.
///
/// ```
/// use std::time::Duration;
/// use littleboss_rules::wait::check_state_timeout;
/// let secs = Duration::from_secs;
/// assert!(check_state_timeout(secs(30), secs(30)).is_ok());
/// assert_eq!(
///     check_state_timeout(secs(40), secs(30)).unwrap_err().to_string(),
///     "state_timeout of 40s is longer than ready_timeout of 30s; the new process takes its state before it is ready, so state_timeout is at most ready_timeout"
/// );
/// ```
pub fn check_state_timeout(
    state_timeout: Duration,
    ready_timeout: Duration,
) -> Result<(), WaitError> {
    if state_timeout > ready_timeout {
        return Err(WaitError::StateAfterReady {
            state_timeout: shown(state_timeout),
            ready_timeout: shown(ready_timeout),
        });
    }
    Ok(())
}

/// A wait as the attribute would write it (`250ms`, `30s`, `2m`), or as `Duration`
/// shows it if it is not whole milliseconds.
fn shown(wait: Duration) -> String {
    if wait.subsec_nanos() % 1_000_000 != 0 {
        return format!("{wait:?}");
    }
    let millis = wait.as_millis();
    match (millis % 1000, millis / 1000) {
        (0, secs) if secs > 0 && secs % 60 == 0 => format!("{}m", secs / 60),
        (0, secs) => format!("{secs}s"),
        _ => format!("{millis}ms"),
    }
}

/// How long a new child may take, once it has its listeners, to be ready: its
/// `ready_timeout` if it calls `ready()`, else its `settle` time; at most [`MAX_WAIT`].
/// The one rule for it: the supervisor gives a new child this long, and a `reload`
/// client waits that long for it (besides the hello's time and its own margins) before
/// it gives up.
///
/// ```
/// use std::time::Duration;
/// use littleboss_rules::wait::until_ready;
/// let (settle, timeout) = (Duration::from_millis(250), Duration::from_secs(30));
/// assert_eq!(until_ready(true, settle, timeout), timeout);
/// assert_eq!(until_ready(false, settle, timeout), settle);
/// ```
pub fn until_ready(calls_ready: bool, settle: Duration, ready_timeout: Duration) -> Duration {
    if calls_ready { ready_timeout } else { settle }.min(MAX_WAIT)
}

/// One of the waits a program declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wait {
    /// How long a winding-down child may take before its process group is killed.
    Lameduck,
    /// How long a child that does not call `ready` must run to be ready.
    Settle,
    /// How long the supervisor waits for a child's hello and its `ready`.
    ReadyTimeout,
    /// How long a reloaded child is on probation once ready, the old one standing by.
    Probation,
    /// How long a new child's `take_state` waits for the state of the process it
    /// replaces.
    StateTimeout,
}

impl Wait {
    /// Every wait, in the order messages list them.
    pub const ALL: [Wait; 5] = [
        Wait::Lameduck,
        Wait::Settle,
        Wait::ReadyTimeout,
        Wait::Probation,
        Wait::StateTimeout,
    ];

    /// The option's name, the same in the attribute and the builder: `lameduck`,
    /// `settle`, `ready_timeout`, `probation` or `state_timeout`.
    pub fn name(self) -> &'static str {
        match self {
            Wait::Lameduck => "lameduck",
            Wait::Settle => "settle",
            Wait::ReadyTimeout => "ready_timeout",
            Wait::Probation => "probation",
            Wait::StateTimeout => "state_timeout",
        }
    }

    /// The wait an option names, if it names one.
    pub fn from_name(name: &str) -> Option<Wait> {
        Wait::ALL.into_iter().find(|wait| wait.name() == name)
    }

    /// Checks a wait the builder was given: at most [`MAX_WAIT`], and for `ready_timeout`
    /// and `state_timeout` at least [`MIN_READY_TIMEOUT`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use littleboss_rules::wait::Wait;
    /// assert!(Wait::Lameduck.check(Duration::from_secs(5)).is_ok());
    /// assert_eq!(
    ///     Wait::Lameduck.check(Duration::MAX).unwrap_err().to_string(),
    ///     "lameduck of 18446744073709551615.999999999s is longer than the maximum of 60m (one hour)"
    /// );
    /// ```
    pub fn check(self, wait: Duration) -> Result<Duration, WaitError> {
        self.check_shown(wait, || format!("{wait:?}"))
    }

    /// Parses a wait as the attribute spells it, an integer followed by `ms`, `s` or `m`,
    /// and checks it as [`check`](Self::check) does; errors show the text as written.
    ///
    /// ```
    /// use std::time::Duration;
    /// use littleboss_rules::wait::Wait;
    /// assert_eq!(Wait::Settle.parse("250ms"), Ok(Duration::from_millis(250)));
    /// assert_eq!(Wait::Lameduck.parse("2s"), Ok(Duration::from_secs(2)));
    /// assert!(Wait::Lameduck.parse("61m").is_err());
    /// ```
    pub fn parse(self, text: &str) -> Result<Duration, WaitError> {
        let too_long = || WaitError::TooLong {
            wait: self,
            value: text.to_string(),
        };
        let millis = parse_millis(text).map_err(|overflow| {
            if overflow {
                too_long()
            } else {
                WaitError::Invalid(text.to_string())
            }
        })?;
        self.check_shown(Duration::from_millis(millis), || text.to_string())
    }

    /// [`check`](Self::check), with the value shown as `shown` gives it.
    fn check_shown(
        self,
        wait: Duration,
        shown: impl Fn() -> String,
    ) -> Result<Duration, WaitError> {
        if wait > MAX_WAIT {
            return Err(WaitError::TooLong {
                wait: self,
                value: shown(),
            });
        }
        let has_minimum = matches!(self, Wait::ReadyTimeout | Wait::StateTimeout);
        if wait < MIN_READY_TIMEOUT && has_minimum {
            return Err(WaitError::TooShort {
                wait: self,
                value: shown(),
            });
        }
        Ok(wait)
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a declared wait is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// Not an integer followed by `ms`, `s` or `m` (the attribute's spelling).
    Invalid(String),
    /// Longer than [`MAX_WAIT`].
    TooLong {
        /// Which wait.
        wait: Wait,
        /// The value, as written in the attribute or as the builder's `Duration` shows.
        value: String,
    },
    /// A `ready_timeout` under 1 ms: every child would fail (or a `state_timeout`:
    /// every `take_state` would).
    TooShort {
        /// Which wait.
        wait: Wait,
        /// The value, as written.
        value: String,
    },
    /// A `state_timeout` longer than the `ready_timeout`.
    StateAfterReady {
        /// The `state_timeout`, as the attribute writes it.
        state_timeout: String,
        /// The `ready_timeout` (declared, or the default), as the attribute writes it.
        ready_timeout: String,
    },
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Invalid(text) => write!(
                f,
                "invalid duration {text:?}; write an integer followed by ms, s or m, as in \"250ms\", \"2s\" or \"1m\""
            ),
            WaitError::TooLong { wait, value } => write!(
                f,
                "{wait} of {value} is longer than the maximum of {}m (one hour)",
                MAX_WAIT.as_secs() / 60
            ),
            WaitError::TooShort { wait, value } => {
                let why = match wait {
                    Wait::StateTimeout => "every take_state before its answer could come",
                    _ => "every child before it could say hello",
                };
                write!(f, "{wait} of {value} would fail {why}; the shortest is 1ms")
            }
            WaitError::StateAfterReady {
                state_timeout,
                ready_timeout,
            } => write!(
                f,
                "state_timeout of {state_timeout} is longer than ready_timeout of {ready_timeout}; the new process takes its state before it is ready, so state_timeout is at most ready_timeout"
            ),
        }
    }
}

impl std::error::Error for WaitError {}

/// `250ms`, `2s`, `1m` in milliseconds; `Err(true)` if the number overflows, `Err(false)`
/// if the text is not of that form.
fn parse_millis(text: &str) -> Result<u64, bool> {
    let (number, millis_per_unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(false);
    };
    // `u64::from_str` alone would take a leading `+`.
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(false);
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .ok_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases: &[(&str, u64)] = &[
            ("250ms", 250),
            ("0ms", 0),
            ("0s", 0),
            ("2s", 2_000),
            ("30s", 30_000),
            ("1m", 60_000),
            ("007s", 7_000),
            ("60m", 3_600_000),
            ("3600s", 3_600_000),
            ("3600000ms", 3_600_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                Wait::Lameduck.parse(text),
                Ok(Duration::from_millis(*millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_other_spellings() {
        let cases = [
            "", "2", "s", "ms", "m", "1.5s", "2 s", " 2s", "2s ", "2S", "2MS", "2sec", "1h", "-1s",
            "+1s", "1e3ms", "2mss", "١s", "2µs",
        ];
        for text in cases {
            assert_eq!(
                Wait::Settle.parse(text),
                Err(WaitError::Invalid(text.to_string())),
                "{text:?}"
            );
        }
        assert_eq!(
            Wait::Settle.parse("1.5s").unwrap_err().to_string(),
            "invalid duration \"1.5s\"; write an integer followed by ms, s or m, as in \"250ms\", \"2s\" or \"1m\""
        );
    }

    #[test]
    fn the_maximum_is_one_hour() {
        let cases: &[(&str, bool)] = &[
            ("60m", true),
            ("3600s", true),
            ("3600000ms", true),
            ("3600001ms", false),
            ("3601s", false),
            ("61m", false),
            ("18446744073709551615ms", false),
            // These overflow u64 milliseconds: too long, not invalid.
            ("18446744073709551615s", false),
            ("99999999999999999999ms", false),
            ("307445734561825861m", false),
        ];
        for wait in Wait::ALL {
            for (text, fits) in cases {
                let parsed = wait.parse(text);
                if *fits {
                    assert_eq!(parsed, Ok(MAX_WAIT), "{wait} {text}");
                } else {
                    assert_eq!(
                        parsed,
                        Err(WaitError::TooLong {
                            wait,
                            value: text.to_string()
                        }),
                        "{wait} {text}"
                    );
                }
            }
        }
        assert_eq!(
            Wait::Lameduck
                .parse("18446744073709551615ms")
                .unwrap_err()
                .to_string(),
            "lameduck of 18446744073709551615ms is longer than the maximum of 60m (one hour)"
        );
    }

    #[test]
    fn checks_durations() {
        let one_ms = Duration::from_millis(1);
        for wait in Wait::ALL {
            assert_eq!(wait.check(MAX_WAIT), Ok(MAX_WAIT), "{wait}");
            assert_eq!(wait.check(one_ms), Ok(one_ms), "{wait}");
            for over in [
                MAX_WAIT + Duration::from_nanos(1),
                MAX_WAIT + one_ms,
                Duration::MAX,
            ] {
                assert_eq!(
                    wait.check(over),
                    Err(WaitError::TooLong {
                        wait,
                        value: format!("{over:?}")
                    }),
                    "{wait} {over:?}"
                );
            }
        }
        assert_eq!(
            Wait::Settle
                .check(MAX_WAIT + one_ms)
                .unwrap_err()
                .to_string(),
            "settle of 3600.001s is longer than the maximum of 60m (one hour)"
        );
    }

    #[test]
    fn zero_is_refused_only_for_the_timeouts() {
        assert_eq!(Wait::Lameduck.check(Duration::ZERO), Ok(Duration::ZERO));
        assert_eq!(Wait::Probation.check(Duration::ZERO), Ok(Duration::ZERO));
        assert_eq!(
            Wait::StateTimeout.parse("0ms").unwrap_err().to_string(),
            "state_timeout of 0ms would fail every take_state before its answer could come; the shortest is 1ms"
        );
        assert_eq!(
            Wait::StateTimeout.check(MIN_READY_TIMEOUT),
            Ok(MIN_READY_TIMEOUT)
        );
        assert_eq!(Wait::Settle.check(Duration::ZERO), Ok(Duration::ZERO));
        assert_eq!(Wait::Settle.parse("0ms"), Ok(Duration::ZERO));
        let under = Duration::from_micros(999);
        assert_eq!(
            Wait::ReadyTimeout.check(under),
            Err(WaitError::TooShort {
                wait: Wait::ReadyTimeout,
                value: format!("{under:?}")
            })
        );
        assert_eq!(
            Wait::ReadyTimeout.check(MIN_READY_TIMEOUT),
            Ok(MIN_READY_TIMEOUT)
        );
        assert_eq!(
            Wait::ReadyTimeout
                .check(Duration::ZERO)
                .unwrap_err()
                .to_string(),
            "ready_timeout of 0ns would fail every child before it could say hello; the shortest is 1ms"
        );
        assert_eq!(
            Wait::ReadyTimeout.parse("0s").unwrap_err().to_string(),
            "ready_timeout of 0s would fail every child before it could say hello; the shortest is 1ms"
        );
    }

    #[test]
    fn a_state_timeout_is_at_most_the_ready_timeout() {
        let ms = Duration::from_millis;
        for (state, ready, fits) in [
            (ms(5_000), ms(30_000), true),
            (ms(30_000), ms(30_000), true),
            (ms(30_001), ms(30_000), false),
            (ms(1), ms(1), true),
            (ms(2), ms(1), false),
            (MAX_WAIT, MAX_WAIT, true),
        ] {
            assert_eq!(
                check_state_timeout(state, ready).is_ok(),
                fits,
                "{state:?} {ready:?}"
            );
        }
        // Both values, as the attribute writes them.
        for (state, ready, text) in [
            (
                ms(30_001),
                ms(30_000),
                "30001ms is longer than ready_timeout of 30s",
            ),
            (
                ms(120_000),
                ms(60_000),
                "2m is longer than ready_timeout of 1m",
            ),
            (
                ms(90_000),
                ms(1_500),
                "90s is longer than ready_timeout of 1500ms",
            ),
            (
                Duration::from_micros(1_500),
                ms(1),
                "1.5ms is longer than ready_timeout of 1ms",
            ),
        ] {
            let shown = check_state_timeout(state, ready).unwrap_err().to_string();
            let expected = format!(
                "state_timeout of {text}; the new process takes its state before it is ready, so state_timeout is at most ready_timeout"
            );
            assert_eq!(shown, expected);
        }
    }

    #[test]
    fn the_default_state_timeout_fits_a_short_ready_timeout() {
        let secs = Duration::from_secs;
        assert_eq!(
            state_timeout(None, DEFAULT_READY_TIMEOUT),
            DEFAULT_STATE_TIMEOUT
        );
        assert_eq!(state_timeout(None, secs(2)), secs(2));
        assert_eq!(state_timeout(Some(secs(1)), secs(2)), secs(1));
    }

    #[test]
    fn names() {
        for wait in Wait::ALL {
            assert_eq!(Wait::from_name(wait.name()), Some(wait));
        }
        assert_eq!(Wait::from_name("timeout"), None);
    }
}
