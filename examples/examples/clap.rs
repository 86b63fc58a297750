//! A program whose clap parser owns every flag, littleboss's included.
//!
//! ```text
//! cargo run -p littleboss-examples --example clap -- --help
//! cargo run -p littleboss-examples --example clap -- --littleboss start --greeting hi &
//! curl localhost:8081/            # hi from pid 1234
//! cargo run -p littleboss-examples --example clap -- --littleboss reload -- --greeting hello
//! ```
//!
//! clap parses the command line first, so `--littleboss` and `--http` appear in
//! `--help` with the program's own flags; the program then hands littleboss the mode
//! and the address it parsed (the Go `Command`). In the supervised child, the listener
//! flag arrives as bound (`--http=127.0.0.1:8081`) and `--littleboss` is gone; the
//! program reads its own flags again from [`littleboss::Context::args`].

use std::process::ExitCode;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Says hello over HTTP, supervised by littleboss.
#[derive(Debug, Parser)]
#[command(name = "clap-example")]
struct Cli {
    /// What littleboss does: bypass (run directly), start, dev, stop, reload, status
    /// or status-json.
    #[arg(long, default_value = "bypass")]
    littleboss: String,

    /// The address to serve HTTP on [default: 127.0.0.1:8081; empty: off]. Given with
    /// `--littleboss reload`, the listener moves to the new address.
    // No default_value here: a default would count as given, and move the listener back
    // on every reload.
    #[arg(long)]
    http: Option<String>,

    /// The greeting to answer with.
    #[arg(long, default_value = "hello")]
    greeting: String,

    /// With `--littleboss reload`: the new process's arguments.
    #[arg(last = true)]
    new_args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut lb = littleboss::Littleboss::new("clap-example")
        .listener("http", "tcp:127.0.0.1:8081")
        .command(&cli.littleboss)
        .calls_ready(true);
    if let Some(address) = &cli.http {
        lb = lb.listener_address("http", address);
    }
    lb.run(serve)
}

async fn serve(lb: littleboss::Context) -> std::io::Result<()> {
    // The program's own flags, littleboss's removed.
    let cli = Cli::parse_from(lb.args());
    let listener = lb.tcp_listener("http")?;
    let body = format!("{} from pid {}\n", cli.greeting, std::process::id());
    lb.ready();
    loop {
        let (mut stream, _) = tokio::select! {
            _ = lb.lameduck() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let body = body.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
