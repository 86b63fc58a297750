//! `lb-forker`: a littleboss program (service `lbforker`) that leaves a
//! grandchild holding its listener, for `tests/faults.rs`.
//!
//! Once it has its `http` listener (default `tcp:127.0.0.1:0`), it starts `sleep 600`
//! with the listening socket inherited (close-on-exec cleared in the new process only),
//! prints `lb-forker: pid PID grandchild GPID` and
//! `lb-forker: pid PID serving http on ADDR` on stderr, calls `ready()`, and
//! serves HTTP until lameduck. It never waits for the grandchild: the supervisor must
//! clean it up with the process group.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::{Command, Stdio};

use littleboss::Context;
use littleboss_tests::serve::serve_greeting;
use rustix::io::FdFlags;

#[littleboss::main(
    name = "lbforker",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true,
    lameduck = "2s"
)]
async fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    let listener = lb.tcp_listener("http")?;
    let addr = listener.local_addr()?;
    let raw = listener.as_raw_fd();
    let mut sleeper = Command::new("sleep");
    sleeper
        .arg("600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked process before exec and makes one
    // async-signal-safe call (fcntl) on an fd number taken before the fork; it
    // allocates nothing and takes no lock.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut sleeper, move || {
            // SAFETY: `listener` is open in this process until `main` returns, so the
            // forked copy of this fd number is open and is the listening socket.
            let fd = BorrowedFd::borrow_raw(raw);
            rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
            Ok(())
        });
    }
    let grandchild = sleeper.spawn()?;
    littleboss_tests::say!("lb-forker: pid {pid} grandchild {}", grandchild.id());
    littleboss_tests::say!("lb-forker: pid {pid} serving http on {addr}");
    lb.ready();
    serve_greeting(listener, &lb, "lb-forker: accept").await?;
    littleboss_tests::say!("lb-forker: pid {pid} wound down");
    Ok(())
}
