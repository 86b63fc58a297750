//! A plain (non-async) program: threads and blocking std sockets, no runtime.
//!
//! ```text
//! cargo run -p littleboss-examples --example sync -- --littleboss=start &
//! curl localhost:8083/
//! ```
//!
//! It waits for connections with `poll(2)` and a timeout, so that it notices lameduck
//! within 100 ms without ever shutting down the listener it shares with the next
//! process, and finishes the connections it accepted before it returns. The listener is
//! non-blocking: during a reload the other process may accept the connection that woke
//! this one, and a blocking accept would then wait for the next.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;

use rustix::event::{PollFd, PollFlags, Timespec};

#[littleboss::main(
    name = "sync-example",
    listener(http = "tcp:127.0.0.1:8083"),
    calls_ready = true
)]
fn main(lb: littleboss::Context) -> io::Result<()> {
    let listener = lb.std_tcp_listener("http")?;
    listener.set_nonblocking(true)?;
    lb.ready();
    let mut workers = Vec::new();
    while !lb.is_lameduck() {
        let mut fds = [PollFd::new(&listener, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        if rustix::event::poll(&mut fds, Some(&timeout))? == 0 {
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        // Accepted sockets do not inherit non-blocking mode on Linux; be explicit.
        stream.set_nonblocking(false)?;
        workers.push(thread::spawn(move || answer(stream)));
        workers.retain(|worker| !worker.is_finished());
    }
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn answer(mut stream: TcpStream) {
    let mut request = [0u8; 1024];
    let _ = stream.read(&mut request);
    let body = format!("hello from a sync main, pid {}\n", std::process::id());
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}
