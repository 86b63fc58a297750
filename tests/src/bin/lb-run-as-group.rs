//! `lb-run-as-group`: a helper whose children run as `nobody` in group `nogroup`
//! (service `lbgroup`).
//!
//! Answers every request on its `http` listener with its report: uid, gid, groups,
//! `HOME`, `USER`, `LOGNAME` (see `littleboss_tests::report_support`).

use littleboss::Context;
use littleboss_tests::report_support::{report, serve};

#[littleboss::main(
    name = "lbgroup",
    user = "nobody",
    group = "nogroup",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true
)]
async fn main(lb: Context) -> std::io::Result<()> {
    let report = report(&lb);
    serve(lb, "lb-run-as-group", report).await
}
