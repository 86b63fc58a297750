//! What a state may hold: at most [`MAX_STATE_BYTES`] bytes and [`MAX_STATE_FDS`] fds,
//! each named once, by a name of 1 to [`MAX_STATE_FD_NAME`] bytes. The giver checks
//! what it gives, before it writes anything; the receiver checks what came the same
//! way, since a supervisor only relays it.

use std::collections::BTreeSet;

use crate::control::protocol::{MAX_STATE_BYTES, MAX_STATE_FD_NAME, MAX_STATE_FDS};
use crate::error::StateProblem;

/// Checks a state's size.
pub(crate) fn check_size(size: u64) -> Result<(), StateProblem> {
    if size > MAX_STATE_BYTES {
        return Err(StateProblem::TooLarge { size });
    }
    Ok(())
}

/// Checks the names of a state's fds, all of them: how many, and each name.
pub(crate) fn check_names<'a>(
    names: impl ExactSizeIterator<Item = &'a str>,
) -> Result<(), StateProblem> {
    let count = names.len();
    if count > MAX_STATE_FDS {
        return Err(StateProblem::TooManyFds { count });
    }
    let mut seen = BTreeSet::new();
    for name in names {
        check_name(name)?;
        if !seen.insert(name) {
            return Err(StateProblem::FdName {
                name: name.to_string(),
                why: "is given twice",
            });
        }
    }
    Ok(())
}

/// Checks one name of an fd of a state.
fn check_name(name: &str) -> Result<(), StateProblem> {
    if name.is_empty() {
        return Err(StateProblem::FdName {
            name: String::new(),
            why: "has an empty name",
        });
    }
    if name.len() > MAX_STATE_FD_NAME {
        return Err(StateProblem::FdName {
            name: start_of(name),
            why: "has a name longer than 255 bytes",
        });
    }
    Ok(())
}

/// The first 32 characters of a long name, for a message.
fn start_of(name: &str) -> String {
    let mut start: String = name.chars().take(32).collect();
    start.push('…');
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Result<(), String> {
        check_names(list.iter().copied()).map_err(|e| e.to_string())
    }

    #[test]
    fn each_limit_is_named() {
        assert_eq!(check_size(MAX_STATE_BYTES), Ok(()));
        assert_eq!(
            check_size(MAX_STATE_BYTES + 1).unwrap_err().to_string(),
            format!(
                "the state is {} bytes; at most {MAX_STATE_BYTES}",
                MAX_STATE_BYTES + 1
            )
        );
        let many: Vec<String> = (0..=MAX_STATE_FDS).map(|i| format!("fd{i}")).collect();
        let all = check_names(many.iter().map(String::as_str));
        assert_eq!(
            all.unwrap_err().to_string(),
            "the state carries 1025 fds; at most 1024"
        );
        let fit = check_names(many[..MAX_STATE_FDS].iter().map(String::as_str));
        assert_eq!(fit, Ok(()));
        assert_eq!(names(&["db", "cache"]), Ok(()));
        assert_eq!(
            names(&["db", ""]).unwrap_err(),
            "the state's fd \"\" has an empty name"
        );
        assert_eq!(
            names(&["db", "db"]).unwrap_err(),
            "the state's fd \"db\" is given twice"
        );
        let long = "x".repeat(MAX_STATE_FD_NAME + 1);
        assert_eq!(
            names(&[&long]).unwrap_err(),
            format!(
                "the state's fd \"{}…\" has a name longer than 255 bytes",
                "x".repeat(32)
            )
        );
        assert_eq!(names(&[&long[1..]]), Ok(()));
    }
}
