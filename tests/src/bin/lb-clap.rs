//! `lb-clap`: a helper whose clap parser owns every flag, littleboss's included
//! (service `lbclap`), as in `examples/examples/clap.rs`.
//!
//! clap reads `--littleboss MODE`, `--http ADDR` and `--name-to-greet NAME`; the program
//! hands littleboss the mode and the address it parsed. The process that serves parses
//! `lb.args()` again and answers every request with its report (see
//! `littleboss_tests::report_support`) plus `greet`, the name it read from there.

use std::process::ExitCode;

use clap::Parser;
use littleboss::Context;
use littleboss_tests::report_support::{report, serve};
use serde_json::json;

/// Greets someone over HTTP, supervised by littleboss.
#[derive(Debug, Parser)]
#[command(name = "lb-clap")]
struct Cli {
    /// What littleboss does: bypass, start, dev, stop, reload, status or status-json.
    #[arg(long, default_value = "bypass")]
    littleboss: String,

    /// The address to serve HTTP on (default 127.0.0.1:0; empty: off).
    #[arg(long)]
    http: Option<String>,

    /// Whom to greet.
    #[arg(long, default_value = "world")]
    name_to_greet: String,

    /// With `--littleboss reload`: the new process's arguments.
    #[arg(last = true)]
    rest: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut lb = littleboss::Littleboss::new("lbclap")
        .listener("http", "tcp:127.0.0.1:0")
        .command(&cli.littleboss)
        .calls_ready(true);
    if let Some(address) = &cli.http {
        lb = lb.listener_address("http", address);
    }
    lb.run(serve_cli)
}

async fn serve_cli(lb: Context) -> std::io::Result<()> {
    // The program's own flags again, littleboss's removed.
    let cli = Cli::parse_from(lb.args());
    let mut report = report(&lb);
    report.insert("greet".into(), json!(cli.name_to_greet));
    report.insert("mode_flag".into(), json!(cli.littleboss));
    serve(lb, "lb-clap", report).await
}
