//! `lb-run-as-env`: the builder's `user` and `group`, taken from the environment
//! (service `lbrunas`): `LB_PRIV_USER` and `LB_PRIV_GROUP`, each set only if its
//! variable is (the client commands need neither).
//!
//! Answers every request on its `http` listener with its report: uid, gid, groups,
//! `HOME`, `USER`, `LOGNAME` (see `littleboss_tests::report_support`).

use std::process::ExitCode;

use littleboss_tests::report_support::{report, serve};

fn main() -> ExitCode {
    let mut lb = littleboss::Littleboss::new("lbrunas")
        .listener("http", "tcp:127.0.0.1:0")
        .calls_ready(true);
    if let Ok(user) = std::env::var("LB_PRIV_USER") {
        lb = lb.user(&user);
    }
    if let Ok(group) = std::env::var("LB_PRIV_GROUP") {
        lb = lb.group(&group);
    }
    lb.run(|lb| async move {
        let report = report(&lb);
        serve(lb, "lb-run-as-env", report).await
    })
}
