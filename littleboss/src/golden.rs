//! Golden bytes (tests only): the exact encoding of every message that crosses a
//! process or an exec, kept in `littleboss/tests/golden/`, one `NAME HEX` line a
//! message. A test that encodes them today and finds other bytes fails: a running
//! process of another release reads these bytes, so a change to them needs a new
//! protocol or state version (PROTOCOL.md), never a silent one.
//!
//! A new message, or a new version, adds lines: run the tests with
//! `LITTLEBOSS_BLESS_GOLDEN=1 cargo test -p littleboss --lib encodes_as` to write the
//! files, and commit them. A line that changes is
//! a break of the wire format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The variable that writes the golden files instead of comparing with them.
const BLESS_ENV: &str = "LITTLEBOSS_BLESS_GOLDEN";

/// `bytes` as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The bytes of a hex string.
pub(crate) fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The path of golden file `file`.
fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file)
}

/// The entries of golden file `file`, by name.
pub(crate) fn read(file: &str) -> BTreeMap<String, Vec<u8>> {
    let text = std::fs::read_to_string(path(file))
        .unwrap_or_else(|e| panic!("golden file {}: {e}", path(file).display()));
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, bytes) = line.rsplit_once(' ').expect("NAME HEX");
            (name.to_string(), unhex(bytes))
        })
        .collect()
}

/// Checks that `entries` (name, bytes) are exactly the golden file `file`, whose first
/// lines (`#`) say what it holds; panics naming every line that differs, is new, or is
/// gone.
pub(crate) fn check(file: &str, about: &str, entries: &[(String, Vec<u8>)]) {
    if std::env::var_os(BLESS_ENV).is_some() {
        let mut text = String::new();
        for line in about.lines() {
            let _ = writeln!(text, "# {line}");
        }
        for (name, bytes) in entries {
            let _ = writeln!(text, "{name} {}", hex(bytes));
        }
        std::fs::write(path(file), text).expect("write the golden file");
        return;
    }
    let golden = read(file);
    let mut wrong = Vec::new();
    for (name, bytes) in entries {
        match golden.get(name) {
            Some(want) if want == bytes => {}
            Some(want) => wrong.push(format!(
                "{name}: CHANGED\n  golden: {}\n  now:    {}",
                hex(want),
                hex(bytes)
            )),
            None => wrong.push(format!("{name}: NEW, not in the golden file")),
        }
    }
    for name in golden.keys() {
        if !entries.iter().any(|(n, _)| n == name) {
            wrong.push(format!("{name}: GONE, no longer encoded"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the encoding in {} changed:\n{}\n\nA process of another release reads these bytes: a change to \
         a message needs a new protocol version, and a change to the upgrade state a new state \
         version (PROTOCOL.md). A new message or version adds lines: run with {BLESS_ENV}=1 and \
         commit the file.",
        path(file).display(),
        wrong.join("\n")
    );
}
