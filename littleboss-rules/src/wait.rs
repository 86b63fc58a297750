//! The waits a program declares: `lameduck`, `settle`, `ready_timeout` and `probation`.
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
//! every child would fail before it could start.

use std::fmt;
use std::time::Duration;

/// The longest `lameduck`, `settle`, `ready_timeout` or `probation`: one hour.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The shortest `ready_timeout`: the child's hello says it in whole milliseconds, so
/// anything shorter is zero there.
pub const MIN_READY_TIMEOUT: Duration = Duration::from_millis(1);

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
}

impl Wait {
    /// Every wait, in the order messages list them.
    pub const ALL: [Wait; 4] = [
        Wait::Lameduck,
        Wait::Settle,
        Wait::ReadyTimeout,
        Wait::Probation,
    ];

    /// The option's name, the same in the attribute and the builder: `lameduck`,
    /// `settle`, `ready_timeout` or `probation`.
    pub fn name(self) -> &'static str {
        match self {
            Wait::Lameduck => "lameduck",
            Wait::Settle => "settle",
            Wait::ReadyTimeout => "ready_timeout",
            Wait::Probation => "probation",
        }
    }

    /// The wait an option names, if it names one.
    pub fn from_name(name: &str) -> Option<Wait> {
        Wait::ALL.into_iter().find(|wait| wait.name() == name)
    }

    /// Checks a wait the builder was given: at most [`MAX_WAIT`], and for `ready_timeout`
    /// at least [`MIN_READY_TIMEOUT`].
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
        if wait < MIN_READY_TIMEOUT && self == Wait::ReadyTimeout {
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
    /// A `ready_timeout` under 1 ms: every child would fail.
    TooShort {
        /// Which wait.
        wait: Wait,
        /// The value, as written.
        value: String,
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
            WaitError::TooShort { wait, value } => write!(
                f,
                "{wait} of {value} would fail every child before it could say hello; the shortest is 1ms"
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
    fn zero_is_refused_only_for_ready_timeout() {
        assert_eq!(Wait::Lameduck.check(Duration::ZERO), Ok(Duration::ZERO));
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
    fn names() {
        for wait in Wait::ALL {
            assert_eq!(Wait::from_name(wait.name()), Some(wait));
        }
        assert_eq!(Wait::from_name("timeout"), None);
    }
}
