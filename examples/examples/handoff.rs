//! A line server whose idle connections move to the new process at a reload, written
//! with the Context's building blocks (`Context::adopt`, `Context::hand_over`) instead of
//! the HTTP helpers, which do the same for HTTP/1.1.
//!
//! ```text
//! cargo run -p littleboss-examples --example handoff -- --littleboss=start &
//! nc localhost 7070                                   # type a line: pid 1234: a line
//! cargo run -p littleboss-examples --example handoff -- --littleboss=reload
//!                                                     # the same nc, the next line:
//!                                                     # pid 1240: the next line
//! ```
//!
//! Each line is answered with the process's pid and the line. At lameduck a connection
//! that is between two lines moves to the new process with the start of a line it may
//! have read already; one in the middle of an answer moves once it is written. A
//! connection that the new process does not take stays here and is closed.
//!
//! It can also stand by (`Context::can_stand_by`): when the new process is on probation
//! (a binary that declares `probation`), this one stops accepting and moves its
//! connections as at lameduck, but stays, warm; if the new one fails, it accepts again
//! at once (`Context::resumed`) and the connections come back to it.

use std::io;

use littleboss::{Context, Handoff};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[littleboss::main(
    name = "handoff",
    listener(lines = "tcp:127.0.0.1:7070"),
    calls_ready = true
)]
async fn main(lb: Context) -> io::Result<()> {
    let mut listener = Some(lb.tcp_listener("lines")?);
    // Standing by, the listener is out of the runtime: epoll no longer wakes this
    // process for each connection the new one takes.
    let mut parked = None;
    // Before ready: the process before hands its connections only to one that adopts
    // them by the time it is ready.
    let mut adopted = lb.adopt("lines")?;
    lb.can_stand_by();
    lb.ready();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = lb.lameduck() => break,
            // A new process is on probation: stop accepting, and wait (`serve` moves
            // the connections).
            _ = lb.standby(), if listener.is_some() => {
                parked = listener.take().map(TcpListener::into_std).transpose()?;
            }
            // It failed: accept again.
            _ = lb.resumed(), if parked.is_some() => {
                listener = parked.take().map(TcpListener::from_std).transpose()?;
            }
            Some(moved) = adopted.next() => {
                let stream = TcpStream::from_std(moved.stream)?;
                connections.spawn(serve(lb.clone(), stream, moved.buffered));
            }
            accepted = accept(listener.as_ref()) => {
                let (stream, _) = accepted?;
                connections.spawn(serve(lb.clone(), stream, Vec::new()));
            }
        }
    }
    // Those handed in just before lameduck (none comes after it).
    while let Some(moved) = adopted.next().await {
        let stream = TcpStream::from_std(moved.stream)?;
        connections.spawn(serve(lb.clone(), stream, moved.buffered));
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The next connection, or never while standing by.
async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Resolves at lameduck, or when this process stands by: either way its connections
/// move.
async fn winding_down(lb: &Context) {
    tokio::select! {
        _ = lb.lameduck() => {}
        _ = lb.standby() => {}
    }
}

/// Answers each line of `stream` (`read` first: bytes read before, by this process or
/// the one before); at lameduck or standby, between two lines, hands the connection
/// over.
async fn serve(lb: Context, mut stream: TcpStream, mut read: Vec<u8>) {
    let pid = std::process::id();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = read.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = read.drain(..=end).collect();
            let answer = format!("pid {pid}: {}", String::from_utf8_lossy(&line));
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
        tokio::select! {
            // Between two lines (what was read holds no whole line): move.
            _ = winding_down(&lb) => {
                let Ok(std) = stream.into_std() else { return };
                let moving = Handoff { stream: std, buffered: read };
                // Not taken: close it here (a lingering close would be kinder).
                let _ = lb.hand_over("lines", moving).await;
                return;
            }
            n = stream.read(&mut chunk) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
            },
        }
    }
}
