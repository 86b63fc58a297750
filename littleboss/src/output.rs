//! Printing that never panics: a closed stdout or stderr (a pipe whose reader left, as
//! in `myblog --littleboss=status | head -1`) loses the line instead of killing the
//! process with a panic. The supervisor, above all, must outlive its terminal.
//!
//! Each line is formatted first and written with one `write` (std's stderr is
//! unbuffered, so `writeln!` on it writes each piece of the format on its own): the
//! supervisor and its children share a terminal or a log file, and a line of one is
//! never cut by a line of another.

/// `println!` that ignores write errors.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores write errors.
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::write!(::std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores write errors.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut line = ::std::format!($($arg)*);
        line.push('\n');
        let _ = ::std::io::stderr().write_all(line.as_bytes());
    }};
}

/// `eprint!` that ignores write errors.
macro_rules! err {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::io::stderr().write_all(::std::format!($($arg)*).as_bytes());
    }};
}

pub(crate) use {err, errln, out, outln};
