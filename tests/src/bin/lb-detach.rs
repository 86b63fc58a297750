//! `lb-detach`: a littleboss program (service `lbdetach`) whose descendants
//! leave its process group, for `tests/descendants.rs`.
//!
//! Once it has its `http` listener (default `tcp:127.0.0.1:0`), it starts `sleep 600`
//! in a session of its own (`setsid()` in the new process) with the listening socket
//! inherited, as a careless daemonizing library would, and prints
//! `lb-detach: pid PID helper HPID`. With `--orphan` it also runs
//! `sh -c 'sleep 1 & echo $!'`, waits for the shell, and prints
//! `lb-detach: pid PID orphan OPID`: the `sleep` is orphaned at once, and exits
//! a second later, to be reaped by whoever it was reparented to. Then it prints
//! `lb-detach: pid PID serving http on ADDR`, calls `ready()` and serves HTTP
//! until lameduck. It never waits for the helper.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::{Command, Stdio};

use littleboss::Context;
use littleboss_tests::serve::serve_greeting;
use littleboss_tests::switches;
use rustix::io::FdFlags;

#[littleboss::main(
    name = "lbdetach",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true,
    lameduck = "1s"
)]
async fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    let mut orphan = false;
    for switch in switches(lb.args()) {
        match switch.map_err(io::Error::other)?.as_str() {
            "--orphan" => orphan = true,
            other => return Err(io::Error::other(format!("unknown switch {other}"))),
        }
    }
    let listener = lb.tcp_listener("http")?;
    let addr = listener.local_addr()?;
    let raw = listener.as_raw_fd();
    let mut helper = Command::new("sleep");
    helper
        .arg("600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked process before exec and makes two
    // async-signal-safe calls (setsid, fcntl) on an fd number taken before the fork; it
    // allocates nothing and takes no lock.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut helper, move || {
            rustix::process::setsid()?;
            // SAFETY: `listener` is open in this process until `main` returns, so the
            // forked copy of this fd number is open and is the listening socket.
            let fd = BorrowedFd::borrow_raw(raw);
            rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
            Ok(())
        });
    }
    let helper = helper.spawn()?;
    littleboss_tests::say!("lb-detach: pid {pid} helper {}", helper.id());
    if orphan {
        let out = Command::new("/bin/sh")
            .args(["-c", "sleep 1 >/dev/null 2>&1 & echo $!"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()?;
        let orphan = String::from_utf8_lossy(&out.stdout).trim().to_string();
        littleboss_tests::say!("lb-detach: pid {pid} orphan {orphan}");
    }
    littleboss_tests::say!("lb-detach: pid {pid} serving http on {addr}");
    lb.ready();
    serve_greeting(listener, &lb, "lb-detach: accept").await?;
    Ok(())
}
