//! Support for `tests/tests/flags_and_users.rs` and its helper programs
//! (`src/bin/lb-priv-*.rs`): what a helper knows about itself, and a tiny HTTP server
//! that answers every request with it, as JSON.
//!
//! Every helper takes its `http` listener, prints `PROGRAM: pid PID serving http on
//! ADDR` on stderr (the line [`Spawned::wait_serving`](crate::Spawned::wait_serving)
//! reads), calls `lb.ready()`, and answers each request with the [`Report`] it made at
//! start, until lameduck.

use std::io;

use littleboss::Context;
use serde_json::{Map, Value, json};

use crate::serve::{mode_name, serve_http, take_http};
use crate::status_numbers;

/// What a helper answers: a JSON object.
pub type Report = Map<String, Value>;

/// The process as it sees itself: `pid`, `mode` (`bypass` or `supervised`), `args`
/// (`lb.args()`), `argv` (`std::env::args_os()`), `uid`, `gid` and `groups` (the
/// `Uid:`, `Gid:` and `Groups:` lines of `/proc/self/status`, as lists of numbers) and
/// `env` (`HOME`, `USER` and `LOGNAME`, `null` when unset).
pub fn report(lb: &Context) -> Report {
    let lossy = |args: Vec<std::ffi::OsString>| -> Vec<String> {
        args.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    let ids = |field: &str| status_numbers(std::process::id(), field).unwrap_or_default();
    let var = |name: &str| -> Value {
        std::env::var_os(name).map_or(Value::Null, |v| json!(v.to_string_lossy()))
    };
    let mut report = Map::new();
    report.insert("pid".into(), json!(std::process::id()));
    report.insert("mode".into(), json!(mode_name(lb)));
    report.insert("args".into(), json!(lossy(lb.args())));
    report.insert("argv".into(), json!(lossy(std::env::args_os().collect())));
    report.insert("uid".into(), json!(ids("Uid")));
    report.insert("gid".into(), json!(ids("Gid")));
    report.insert("groups".into(), json!(ids("Groups")));
    report.insert(
        "env".into(),
        json!({ "HOME": var("HOME"), "USER": var("USER"), "LOGNAME": var("LOGNAME") }),
    );
    report
}

/// Serves the `http` listener, answering every request with `report` as JSON, until
/// lameduck; `program` names the helper in its stderr lines.
pub async fn serve(lb: Context, program: &str, report: Report) -> io::Result<()> {
    let listener = take_http(&lb, program)?;
    let body = format!("{}\n", Value::Object(report));
    lb.ready();
    serve_http(
        listener,
        lb.lameduck(),
        &format!("{program}: accept"),
        "application/json",
        &body,
    )
    .await;
    eprintln!("{program}: pid {} wound down", std::process::id());
    Ok(())
}
