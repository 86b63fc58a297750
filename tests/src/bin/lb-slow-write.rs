//! `lb-slow-write [--link | --two-parts] SRC DST`: copies `SRC` to a new file `DST` (mode 0755)
//! through one open file, slowly, for the dev mode tests: a build that a slow writer is
//! still writing when the watch looks at it.
//!
//! It creates the file, pauses, writes the first half in several writes with a pause
//! longer than the watch's quiet period (200 ms) before each, prints `half` on stdout,
//! waits for a line on stdin, writes the rest, and exits (closing the file).
//!
//! With `--link`, it writes to `DST.part` and hard-links that to `DST` once the first
//! half is written, so the file at `DST` has its data before any event at `DST` says it
//! is being written (as a first write that takes longer than the quiet period would);
//! `DST.part` is removed at the end.
//!
//! With `--two-parts`, it closes the file once the first half is written, and opens it
//! again to append the rest: a builder that writes in place in parts, whose close says
//! nothing of whether the file is whole. Exit code 1 with a message on any error.

use std::fs::OpenOptions;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// Longer than the watch's quiet period.
const PAUSE: Duration = Duration::from_millis(500);

/// How many writes make the first half.
const WRITES: usize = 4;

fn main() -> io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let link = args.first().is_some_and(|a| a == "--link");
    let two_parts = args.first().is_some_and(|a| a == "--two-parts");
    if link || two_parts {
        args.remove(0);
    }
    let [src, dst] = args.as_slice() else {
        littleboss_tests::say!("usage: lb-slow-write [--link | --two-parts] SRC DST");
        std::process::exit(2);
    };
    let bytes = std::fs::read(src)?;
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    let written = match link {
        true => PathBuf::from(format!("{dst}.part")),
        false => PathBuf::from(dst),
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&written)?;
    for chunk in first.chunks(first.len().div_ceil(WRITES).max(1)) {
        std::thread::sleep(PAUSE);
        file.write_all(chunk)?;
    }
    file.flush()?;
    if link {
        std::fs::hard_link(&written, dst)?;
        std::thread::sleep(PAUSE);
    }
    if two_parts {
        drop(file);
        // Closed, half written, for longer than the quiet period.
        std::thread::sleep(PAUSE);
        file = OpenOptions::new().append(true).open(&written)?;
    }
    println!("half");
    io::stdout().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    file.write_all(rest)?;
    drop(file);
    if link {
        std::fs::remove_file(&written)?;
    }
    Ok(())
}
