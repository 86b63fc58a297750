//! `lb-decl`: a builder program (service `lbdecl`) whose declaration is chosen by the
//! variable `LB_DECLARE`, for the tests of what the builder refuses when the program
//! runs (the attribute refuses the same at compile time, so only the builder can be
//! tested this way).
//!
//! | `LB_DECLARE` | declaration |
//! |---|---|
//! | unset | valid, every wait at `MAX_WAIT` |
//! | `lameduck-max` | `lameduck(Duration::MAX)` |
//! | `settle-over` | `settle(MAX_WAIT + 1 ms)` |
//! | `ready-timeout-zero` | `ready_timeout(Duration::ZERO)` |
//! | `dashed-flag` | `flag("--lb")` |
//! | `dashed-listener` | a listener named `-spare` |
//! | `listener-like-flag` | a listener named `lb` beside `flag("lb")` |
//!
//! A valid one serves `http` as `lb-http` does, until lameduck.

use std::time::Duration;

use littleboss::{Littleboss, MAX_WAIT};

fn main() -> std::process::ExitCode {
    let lb = Littleboss::new("lbdecl")
        .listener("http", "tcp:127.0.0.1:0")
        .lameduck(MAX_WAIT)
        .settle(MAX_WAIT)
        .ready_timeout(MAX_WAIT)
        .calls_ready(true);
    let lb = match std::env::var("LB_DECLARE").as_deref() {
        Err(_) => lb,
        Ok("lameduck-max") => lb.lameduck(Duration::MAX),
        Ok("settle-over") => lb.settle(MAX_WAIT + Duration::from_millis(1)),
        Ok("ready-timeout-zero") => lb.ready_timeout(Duration::ZERO),
        Ok("dashed-flag") => lb.flag("--lb"),
        Ok("dashed-listener") => lb.listener("-spare", "tcp:"),
        Ok("listener-like-flag") => lb.flag("lb").listener("lb", "tcp:"),
        Ok(other) => {
            littleboss_tests::say!("lb-decl: unknown LB_DECLARE {other:?}");
            return std::process::ExitCode::from(3);
        }
    };
    lb.run(|lb| async move {
        let listener = lb.tcp_listener("http")?;
        lb.ready();
        lb.lameduck().await;
        drop(listener);
        Ok::<(), std::io::Error>(())
    })
}
