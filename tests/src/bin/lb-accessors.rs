//! `lb-accessors`: reports whether each listener accessor of
//! [`littleboss::Context`] gives a blocking or a non-blocking socket (service
//! `lbsdaccessors`).
//!
//! It declares two listeners of each kind, `tcp_a`/`tcp_b` (`tcp:127.0.0.1:0`),
//! `udp_a`/`udp_b` (`udp:127.0.0.1:0`) and `unix_a`/`unix_b` (`unix:`, off until
//! `--unix_a=PATH` and `--unix_b=PATH`), takes the `_a` one of each kind with the tokio
//! accessor and the `_b` one with the `std_` accessor, and prints for each
//!
//! ```text
//! lb-accessors: pid PID ACCESSOR nonblocking=BOOL
//! ```
//!
//! on stderr, `BOOL` being the `O_NONBLOCK` flag of the fd it got (read with
//! `fcntl(F_GETFL)`), or `lb-accessors: pid PID ACCESSOR failed: ERROR`. It then
//! prints `lb-accessors: pid PID reported`, calls `lb.ready()`, and returns at
//! lameduck.

use std::io;
use std::os::fd::AsFd;

use littleboss::Context;
use rustix::fs::OFlags;

#[littleboss::main(
    name = "lbsdaccessors",
    listener(
        tcp_a = "tcp:127.0.0.1:0",
        tcp_b = "tcp:127.0.0.1:0",
        udp_a = "udp:127.0.0.1:0",
        udp_b = "udp:127.0.0.1:0",
        unix_a = "unix:",
        unix_b = "unix:"
    ),
    calls_ready = true
)]
async fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    // The sockets are kept open until lameduck, so the flags cannot change under the
    // test's feet by a close.
    let mut kept: Vec<Box<dyn Send>> = Vec::new();
    macro_rules! report {
        ($accessor:literal, $call:expr) => {
            match $call {
                Ok(socket) => {
                    println_flag(pid, $accessor, socket.as_fd());
                    kept.push(Box::new(socket));
                }
                Err(e) => {
                    littleboss_tests::say!("lb-accessors: pid {pid} {} failed: {e}", $accessor)
                }
            }
        };
    }
    report!("tcp_listener", lb.tcp_listener("tcp_a"));
    report!("std_tcp_listener", lb.std_tcp_listener("tcp_b"));
    report!("udp_socket", lb.udp_socket("udp_a"));
    report!("std_udp_socket", lb.std_udp_socket("udp_b"));
    report!("unix_listener", lb.unix_listener("unix_a"));
    report!("std_unix_listener", lb.std_unix_listener("unix_b"));
    littleboss_tests::say!("lb-accessors: pid {pid} reported");
    lb.ready();
    lb.lameduck().await;
    drop(kept);
    Ok(())
}

fn println_flag(pid: u32, accessor: &str, fd: std::os::fd::BorrowedFd<'_>) {
    match rustix::fs::fcntl_getfl(fd) {
        Ok(flags) => littleboss_tests::say!(
            "lb-accessors: pid {pid} {accessor} nonblocking={}",
            flags.contains(OFlags::NONBLOCK)
        ),
        Err(e) => {
            littleboss_tests::say!("lb-accessors: pid {pid} {accessor} failed: fcntl: {e}")
        }
    }
}
