//! Names a program declares: its service name, its control flag and its listeners.
//!
//! Each is one or more of `A-Z`, `a-z`, `0-9`, `_` and `-`. The service name names the
//! control socket file (`<dir>/<name>.sock`), so it may not hold a `/` or anything a
//! shell or `ps` would show oddly. The control flag and the listeners are flags on the
//! command line (`--littleboss=start`, `--https=:443`), and a flag's name is what
//! follows its one or two dashes: a name that starts with `-` could never be matched,
//! so it is refused, and so is a listener named like the control flag, whose flag it
//! would shadow. A service name may start with `-`: it is never parsed as a flag.

use std::fmt;

/// The control flag's name unless the program renames it: `--littleboss=MODE`.
pub const DEFAULT_FLAG: &str = "littleboss";

/// Which name a [`NameError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum What {
    /// The service name (`name = "myblog"`, `Littleboss::new("myblog")`).
    Service,
    /// The control flag's name (`flag = "lb"`, `Littleboss::flag("lb")`).
    Flag,
    /// A listener's name (`listener(https = ...)`, `Littleboss::listener("https", ...)`).
    Listener,
}

impl What {
    /// `service`, `control flag` or `listener`, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            What::Service => "service",
            What::Flag => "control flag",
            What::Listener => "listener",
        }
    }

    /// What the flag of a name of this kind takes, for messages: `MODE` or `ADDR`.
    fn flag_value(self) -> &'static str {
        match self {
            What::Flag => "MODE",
            _ => "ADDR",
        }
    }
}

/// Why a declared name is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// Empty, or a character other than `A-Z`, `a-z`, `0-9`, `_` and `-`.
    Invalid {
        /// Which name.
        what: What,
        /// The name as declared.
        name: String,
    },
    /// A flag or listener name that starts with `-`: its flag could never match.
    LeadingDash {
        /// Which name.
        what: What,
        /// The name as declared.
        name: String,
    },
    /// A listener named like the control flag.
    TakenByFlag {
        /// The listener's name, which is the control flag's.
        name: String,
    },
    /// A listener declared more than once.
    Duplicate {
        /// The listener's name.
        name: String,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Invalid { what, name } => {
                write!(
                    f,
                    "invalid {} name {name:?}: a name is one or more of A-Z, a-z, 0-9, '_' and '-'",
                    what.as_str()
                )?;
                if *what != What::Service {
                    f.write_str(", not starting with '-'")?;
                }
                Ok(())
            }
            NameError::LeadingDash { what, name } => {
                let bare = name.trim_start_matches('-');
                write!(
                    f,
                    "invalid {} name {name:?}: it may not start with '-', since the dashes of a flag are not part of its name (\"{bare}\" gives --{bare}={})",
                    what.as_str(),
                    what.flag_value()
                )
            }
            NameError::TakenByFlag { name } => write!(
                f,
                "listener name {name:?} is taken by the --{name} control flag; choose another name"
            ),
            NameError::Duplicate { name } => write!(f, "listener {name:?} declared twice"),
        }
    }
}

impl std::error::Error for NameError {}

/// Whether `name` is one or more of `A-Z`, `a-z`, `0-9`, `_` and `-`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a name of a flag: [`is_name`], and no leading `-`.
fn check_flag_like(what: What, name: &str) -> Result<(), NameError> {
    // `---` has nothing left once its dashes go: call it invalid, not mis-dashed.
    if !is_name(name) || name.bytes().all(|b| b == b'-') {
        return Err(NameError::Invalid {
            what,
            name: name.to_string(),
        });
    }
    if name.starts_with('-') {
        return Err(NameError::LeadingDash {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Checks a service name: one or more of `A-Z`, `a-z`, `0-9`, `_` and `-`.
///
/// ```
/// use littleboss_rules::names::check_service_name;
/// assert!(check_service_name("my-blog_2").is_ok());
/// assert_eq!(
///     check_service_name("my blog").unwrap_err().to_string(),
///     "invalid service name \"my blog\": a name is one or more of A-Z, a-z, 0-9, '_' and '-'"
/// );
/// ```
pub fn check_service_name(name: &str) -> Result<(), NameError> {
    if !is_name(name) {
        return Err(NameError::Invalid {
            what: What::Service,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Checks the control flag's name: one or more of `A-Z`, `a-z`, `0-9`, `_` and `-`, not
/// starting with `-` (`"lb"` gives `--lb=start`; `"--lb"` could never match).
pub fn check_flag_name(name: &str) -> Result<(), NameError> {
    check_flag_like(What::Flag, name)
}

/// Checks a listener's name as [`check_flag_name`] does, and that it is not `flag`, the
/// control flag's name, whose flag `--NAME` is.
pub fn check_listener_name(name: &str, flag: &str) -> Result<(), NameError> {
    check_flag_like(What::Listener, name)?;
    if name == flag {
        return Err(NameError::TakenByFlag {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Why `metrics = "NAME"` is refused when no listener of that name is declared: the
/// metrics are served on a declared listener, so that `--NAME=ADDR` moves it.
pub fn metrics_not_declared(name: &str, declared: &[String]) -> String {
    let listed = if declared.is_empty() {
        "none is declared".to_string()
    } else {
        let names: Vec<String> = declared.iter().map(|n| format!("`{n}`")).collect();
        format!("the listeners are {}", names.join(", "))
    };
    format!(
        "`metrics` names listener `{name}`, which is not declared ({listed}); declare it, as in `listener({name} = \"tcp:127.0.0.1:9100\")`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_must_name_a_declared_listener() {
        assert_eq!(
            metrics_not_declared("stats", &["http".into(), "admin".into()]),
            "`metrics` names listener `stats`, which is not declared (the listeners are `http`, `admin`); declare it, as in `listener(stats = \"tcp:127.0.0.1:9100\")`"
        );
        assert!(metrics_not_declared("m", &[]).contains("(none is declared)"));
    }

    /// What each check says of a name: `None` for accepted.
    fn verdict(result: Result<(), NameError>) -> Verdict {
        result.err().map(|e| match e {
            NameError::Invalid { .. } => "invalid",
            NameError::LeadingDash { .. } => "leading dash",
            NameError::TakenByFlag { .. } => "taken",
            NameError::Duplicate { .. } => "duplicate",
        })
    }

    /// What [`verdict`] says.
    type Verdict = Option<&'static str>;

    #[test]
    fn names_table() {
        const OK: Verdict = None;
        const BAD: Verdict = Some("invalid");
        const DASH: Verdict = Some("leading dash");
        // name, as a service, as the control flag, as a listener (beside `littleboss`).
        let cases: &[(&str, Verdict, Verdict, Verdict)] = &[
            ("myblog", OK, OK, OK),
            ("my-blog_2", OK, OK, OK),
            ("A", OK, OK, OK),
            ("_", OK, OK, OK),
            ("0", OK, OK, OK),
            ("a-", OK, OK, OK),
            ("", BAD, BAD, BAD),
            ("-", OK, BAD, BAD),
            ("---", OK, BAD, BAD),
            ("-x", OK, DASH, DASH),
            ("--lb", OK, DASH, DASH),
            ("my blog", BAD, BAD, BAD),
            ("blog.example", BAD, BAD, BAD),
            ("blog/x", BAD, BAD, BAD),
            ("a:b", BAD, BAD, BAD),
            ("a=b", BAD, BAD, BAD),
            ("café", BAD, BAD, BAD),
            ("ｈｔｔｐ", BAD, BAD, BAD),
            ("a\0", BAD, BAD, BAD),
            ("littleboss", OK, OK, Some("taken")),
        ];
        for (name, service, flag, listener) in cases {
            assert_eq!(
                verdict(check_service_name(name)),
                *service,
                "service {name:?}"
            );
            assert_eq!(verdict(check_flag_name(name)), *flag, "flag {name:?}");
            assert_eq!(
                verdict(check_listener_name(name, DEFAULT_FLAG)),
                *listener,
                "listener {name:?}"
            );
        }
    }

    #[test]
    fn a_listener_may_take_the_default_flag_name_once_the_flag_is_renamed() {
        assert_eq!(check_listener_name("littleboss", "lb"), Ok(()));
        assert_eq!(
            check_listener_name("lb", "lb"),
            Err(NameError::TakenByFlag { name: "lb".into() })
        );
    }

    #[test]
    fn messages() {
        let cases: &[(Result<(), NameError>, &str)] = &[
            (
                check_service_name(""),
                "invalid service name \"\": a name is one or more of A-Z, a-z, 0-9, '_' and '-'",
            ),
            (
                check_flag_name("l b"),
                "invalid control flag name \"l b\": a name is one or more of A-Z, a-z, 0-9, '_' and '-', not starting with '-'",
            ),
            (
                check_flag_name("--lb"),
                "invalid control flag name \"--lb\": it may not start with '-', since the dashes of a flag are not part of its name (\"lb\" gives --lb=MODE)",
            ),
            (
                check_listener_name("-http", DEFAULT_FLAG),
                "invalid listener name \"-http\": it may not start with '-', since the dashes of a flag are not part of its name (\"http\" gives --http=ADDR)",
            ),
            (
                check_listener_name("lb", "lb"),
                "listener name \"lb\" is taken by the --lb control flag; choose another name",
            ),
            (
                Err(NameError::Duplicate { name: "a".into() }),
                "listener \"a\" declared twice",
            ),
            (
                check_listener_name("a\nb", DEFAULT_FLAG),
                "invalid listener name \"a\\nb\": a name is one or more of A-Z, a-z, 0-9, '_' and '-', not starting with '-'",
            ),
        ];
        for (result, message) in cases {
            assert_eq!(result.as_ref().unwrap_err().to_string(), *message);
        }
    }
}
