//! The `unix_mode` option's value: a file mode in octal, as in `"0660"`.
//!
//! The rules that the runtime applies too (listener specs, names, waits) are in
//! `littleboss-rules`; the builder takes this mode as a number, so only the attribute
//! reads it from text.

/// A file mode written in octal, `"0660"` or `"0o660"`, at most `0o7777`.
pub(crate) fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if !digits.is_empty() && mode <= 0o7777 => Ok(mode),
        _ => Err(format!(
            "invalid mode `{text}`; write it in octal, as in `\"0660\"`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_octal_modes() {
        for (text, mode) in [
            ("0660", 0o660),
            ("0o600", 0o600),
            ("7777", 0o7777),
            ("0", 0),
        ] {
            assert_eq!(parse_mode(text), Ok(mode), "{text}");
        }
        for text in ["", "0o", "0880", "660a", "10000", "-1", " 0660"] {
            assert!(parse_mode(text).is_err(), "{text}");
        }
    }
}
