//! A UDP echo service: answers each datagram with the process id and the datagram.
//!
//! ```text
//! cargo run -p littleboss-examples --example udp -- --littleboss=start &
//! echo hi | nc -u -w1 127.0.0.1 5300      # pid 1234: hi
//! cargo run -p littleboss-examples --example udp -- --littleboss=reload
//! ```
//!
//! During a reload both processes hold the same socket, and each datagram goes to
//! whichever reads it first; at lameduck the old process stops reading, so none is lost
//! or answered twice.

#[littleboss::main(
    name = "udp-example",
    listener(echo = "udp:127.0.0.1:5300"),
    calls_ready = true
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    let socket = lb.udp_socket("echo")?;
    let pid = std::process::id();
    lb.ready();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (len, peer) = tokio::select! {
            _ = lb.lameduck() => return Ok(()),
            received = socket.recv_from(&mut buf) => received?,
        };
        let mut reply = format!("pid {pid}: ").into_bytes();
        reply.extend_from_slice(&buf[..len]);
        if let Err(e) = socket.send_to(&reply, peer).await {
            eprintln!("udp-example: answering {peer}: {e}");
        }
    }
}
