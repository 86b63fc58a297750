//! `lb-init`: a helper with a supervisor init hook (service `lbinit`).
//!
//! `init` appends one line to the file named by `LB_PRIV_INIT_LOG`:
//! `init pid PID port_bound BOOL children N`, where `port_bound` says whether
//! `127.0.0.1:$LB_PRIV_INIT_PORT` was already bound (binding it failed) and `children`
//! counts the processes the calling process had started at that moment. Then, if
//! `LB_PRIV_INIT_FAIL` is set, it fails with that text as its error.
//!
//! The program appends `child pid PID mode MODE` to the file named by
//! `LB_PRIV_CHILD_LOG` when it starts, and answers every request on `http` with its
//! report (see `littleboss_tests::report_support`) plus `init_log_at_start`, the init
//! log's content when it started (`null` if there was none).

use std::io::Write;

use littleboss::Context;
use littleboss_tests::children_of;
use littleboss_tests::report_support::{report, serve};
use serde_json::json;

/// Appends `line` to the file named by the variable `var`, if it is set.
fn append(var: &str, line: &str) -> Result<(), String> {
    let Some(path) = std::env::var_os(var) else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.to_string_lossy()))?;
    file.write_all(line.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.to_string_lossy()))
}

fn init() -> Result<(), String> {
    let port_bound = match std::env::var("LB_PRIV_INIT_PORT") {
        Ok(port) => {
            let port: u16 = port
                .parse()
                .map_err(|e| format!("LB_PRIV_INIT_PORT={port}: {e}"))?;
            std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
        }
        Err(_) => false,
    };
    append(
        "LB_PRIV_INIT_LOG",
        &format!(
            "init pid {} port_bound {port_bound} children {}\n",
            std::process::id(),
            children_of(std::process::id()).len()
        ),
    )?;
    match std::env::var("LB_PRIV_INIT_FAIL") {
        Ok(reason) => Err(reason),
        Err(_) => Ok(()),
    }
}

#[littleboss::main(
    name = "lbinit",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true,
    supervisor_init = init
)]
async fn main(lb: Context) -> std::io::Result<()> {
    let seen = std::env::var_os("LB_PRIV_INIT_LOG").and_then(|p| std::fs::read_to_string(p).ok());
    let mut report = report(&lb);
    let mode = report["mode"].as_str().unwrap_or("").to_string();
    append(
        "LB_PRIV_CHILD_LOG",
        &format!("child pid {} mode {mode}\n", std::process::id()),
    )
    .map_err(std::io::Error::other)?;
    report.insert("init_log_at_start".into(), json!(seen));
    serve(lb, "lb-init", report).await
}
