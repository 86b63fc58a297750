//! `lb-slow-write SRC DST`: copies `SRC` to a new file `DST` (mode 0755) in two halves
//! through one open file, pausing between them for as long as the test needs, for the
//! dev mode tests: a build written in place by a slow writer.
//!
//! It writes the first half, prints `half` on stdout, waits for a line on stdin, writes
//! the rest, and exits (closing the file). Exit code 1 with a message on any error.

use std::fs::OpenOptions;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: lb-slow-write SRC DST");
        std::process::exit(2);
    };
    let bytes = std::fs::read(src)?;
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(dst)?;
    file.write_all(first)?;
    file.flush()?;
    println!("half");
    io::stdout().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    file.write_all(rest)?;
    Ok(())
}
