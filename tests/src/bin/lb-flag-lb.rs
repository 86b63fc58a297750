//! `lb-flag-lb`: a helper with its control flag renamed to `--lb` (service `lbflag`).
//!
//! Answers every request on its `http` listener with its report (pid, mode,
//! `lb.args()`, argv: see `littleboss_tests::report_support`), as JSON.

use littleboss::Context;
use littleboss_tests::report_support::{report, serve};

#[littleboss::main(
    name = "lbflag",
    flag = "lb",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true
)]
async fn main(lb: Context) -> std::io::Result<()> {
    let report = report(&lb);
    serve(lb, "lb-flag-lb", report).await
}
