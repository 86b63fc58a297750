//! `lb-sync`: a plain (non-`async`) littleboss main (service `lbsync`).
//!
//! It takes its `http` listener (default `tcp:127.0.0.1:0`) as a blocking
//! [`std::net::TcpListener`], prints `lb-sync: pid PID serving http on ADDR` on stderr,
//! and answers every connection's request with `pid PID exe EXE mode MODE\n` and
//! `Connection: close`, as `lb-http` does. It does not call `ready()` (the supervisor
//! takes it as ready after its settle time), and it polls `is_lameduck()` between
//! accepts to know when to return.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use littleboss::Context;
use littleboss_tests::serve;

/// How often the accept loop looks at lameduck when no client is waiting.
const POLL: Duration = Duration::from_millis(10);

#[littleboss::main(name = "lbsync", listener(http = "tcp:127.0.0.1:0"))]
fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    let listener = lb.std_tcp_listener("http")?;
    littleboss_tests::say!(
        "lb-sync: pid {pid} serving http on {}",
        listener.local_addr()?
    );
    let response = serve::response("text/plain", &serve::greeting(&lb)?, true);
    listener.set_nonblocking(true)?;
    while !lb.is_lameduck() {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, &response) {
                    littleboss_tests::say!("lb-sync: connection: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                littleboss_tests::say!("lb-sync: accept: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
    littleboss_tests::say!("lb-sync: pid {pid} wound down");
    Ok(())
}

/// Reads one request head (up to the empty line) and answers it with `response`.
fn answer(stream: TcpStream, response: &str) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut stream = &stream;
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Write)
}
