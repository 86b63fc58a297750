//! `lb-metrics`: a server on `littleboss::http` whose supervisor serves its metrics,
//! for the tests of the journal and the metrics (service `lbmetrics`, or
//! `--name=NAME`).
//!
//! It declares two listeners, `http` and `metrics` (both `tcp:127.0.0.1:0`), and
//! `metrics = "metrics"`: the supervisor serves `GET /metrics` on the second. It serves
//! `http` with the HTTP helpers (lameduck 2 s) and answers `GET /status/N` with status
//! N and anything else with 200 `pid PID\n`. Its arguments (a reload passes new ones
//! after `--`):
//!
//! | switch | effect |
//! |---|---|
//! | `--name=NAME` | the service name (default `lbmetrics`) |
//! | `--fail-start` | exit with code 3 before it is ready, saying `lb-metrics: told to fail` |
//! | `--probation-ms=N` | `.probation(N ms)` |
//! | `--take-metrics` | try to take the `metrics` listener itself and print what it got |

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use littleboss::Context;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        (args.iter()).find_map(|a| a.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let name = value("--name").unwrap_or("lbmetrics").to_string();
    let fail_start = args.iter().any(|a| a == "--fail-start");
    let take_metrics = args.iter().any(|a| a == "--take-metrics");
    let mut lb = littleboss::Littleboss::new(&name)
        .listener("http", "tcp:127.0.0.1:0")
        .listener("metrics", "tcp:127.0.0.1:0")
        .metrics("metrics")
        .calls_ready(true)
        .lameduck(Duration::from_secs(2));
    if let Some(ms) = value("--probation-ms").and_then(|v| v.parse().ok()) {
        lb = lb.probation(Duration::from_millis(ms));
    }
    lb.run(move |lb| serve(lb, fail_start, take_metrics))
}

async fn serve(
    lb: Context,
    fail_start: bool,
    take_metrics: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    if fail_start {
        littleboss_tests::say!("lb-metrics: told to fail");
        std::process::exit(3);
    }
    if take_metrics {
        match lb.tcp_listener("metrics") {
            Ok(_) => littleboss_tests::say!("lb-metrics: took the metrics listener"),
            Err(e) => littleboss_tests::say!("lb-metrics: metrics listener: {e}"),
        }
    }
    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
        let status = (request.uri().path().strip_prefix("/status/"))
            .and_then(|n| n.parse::<u16>().ok())
            .and_then(|n| StatusCode::from_u16(n).ok())
            .unwrap_or(StatusCode::OK);
        let mut response = Response::new(Full::new(Bytes::from(format!(
            "pid {}\n",
            std::process::id()
        ))));
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    });
    littleboss::http::serve(&lb, "http", service).await?;
    Ok(())
}
