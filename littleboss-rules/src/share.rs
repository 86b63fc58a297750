//! `probation_5xx = "N%"`: the share of 5xx responses, in percent, above which the HTTP
//! helpers call a new child on probation unhealthy. N is an integer from 1 to 100 (the
//! builder takes the integer itself); off by default.

use std::fmt;

/// Parses the attribute's spelling, `"5%"`, and checks it as [`check`] does.
///
/// ```
/// use littleboss_rules::share::parse;
/// assert_eq!(parse("5%"), Ok(5));
/// assert_eq!(parse("100%"), Ok(100));
/// assert!(parse("0%").is_err());
/// assert!(parse("5").is_err());
/// ```
pub fn parse(text: &str) -> Result<u8, ShareError> {
    let invalid = || ShareError(text.to_string());
    let number = text.strip_suffix('%').ok_or_else(invalid)?;
    // `u8::from_str` alone would take a leading `+`.
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let pct = number.parse::<u8>().map_err(|_| invalid())?;
    check(pct).map_err(|_| invalid())
}

/// Checks a share the builder was given: from 1 to 100.
///
/// ```
/// use littleboss_rules::share::check;
/// assert_eq!(check(12), Ok(12));
/// assert_eq!(
///     check(0).unwrap_err().to_string(),
///     "probation_5xx of \"0%\" is not a share from 1% to 100%; write an integer followed by %, as in \"5%\""
/// );
/// ```
pub fn check(pct: u8) -> Result<u8, ShareError> {
    if (1..=100).contains(&pct) {
        Ok(pct)
    } else {
        Err(ShareError(format!("{pct}%")))
    }
}

/// A `probation_5xx` that is not an integer from 1 to 100 followed by `%`; it holds the
/// value as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareError(pub String);

impl fmt::Display for ShareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "probation_5xx of {:?} is not a share from 1% to 100%; write an integer followed by %, as in \"5%\"",
            self.0
        )
    }
}

impl std::error::Error for ShareError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_from_one_to_a_hundred_percent() {
        for (text, pct) in [("1%", 1), ("5%", 5), ("050%", 50), ("100%", 100)] {
            assert_eq!(parse(text), Ok(pct), "{text}");
        }
        for text in [
            "", "%", "0%", "101%", "256%", "5", "5 %", " 5%", "+5%", "-5%", "5.5%", "5%%", "٥%",
        ] {
            assert_eq!(parse(text), Err(ShareError(text.to_string())), "{text:?}");
        }
        assert_eq!(check(0), Err(ShareError("0%".into())));
        assert_eq!(check(101), Err(ShareError("101%".into())));
    }
}
