//! `lb-run-as-root`: a helper whose children run as `root` (service `lbroot`): a
//! supervisor that is not root must refuse to start it.
//!
//! Answers every request on its `http` listener with its report (see
//! `littleboss_tests::report_support`).

use littleboss::Context;
use littleboss_tests::report_support::{report, serve};

#[littleboss::main(
    name = "lbroot",
    user = "root",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true
)]
async fn main(lb: Context) -> std::io::Result<()> {
    let report = report(&lb);
    serve(lb, "lb-run-as-root", report).await
}
