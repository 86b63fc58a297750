//! `lb-args`: a helper that shows what it was given (service `lbargs`).
//!
//! Two listeners, `http` (`tcp:127.0.0.1:0`) and `spare` (off unless `--spare=ADDR`);
//! it takes any argument and answers every request on `http` with its report, whose
//! `args` is `lb.args()` and `argv` its real command line (see
//! `littleboss_tests::report_support`).

use littleboss::Context;
use littleboss_tests::report_support::{report, serve};

#[littleboss::main(
    name = "lbargs",
    listener(http = "tcp:127.0.0.1:0", spare = "tcp:"),
    calls_ready = true
)]
async fn main(lb: Context) -> std::io::Result<()> {
    let report = report(&lb);
    serve(lb, "lb-args", report).await
}
