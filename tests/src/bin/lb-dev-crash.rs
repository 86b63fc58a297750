//! `lb-dev-crash`: a build of service `lbdev` that is ready and then crashes, for the
//! dev mode tests.
//!
//! It calls `ready()` at once without accepting anything (the connections that arrive
//! wait in the supervisor's queue, for the next build), prints
//! `lb-dev-crash: pid PID ready`, and 300 ms later panics (exit code 101).

use std::time::Duration;

#[littleboss::main(name = "lbdev", listener(http = "tcp:127.0.0.1:0"), calls_ready = true)]
fn main(lb: littleboss::Context) {
    lb.ready();
    littleboss_tests::say!("lb-dev-crash: pid {} ready", std::process::id());
    std::thread::sleep(Duration::from_millis(300));
    panic!("lb-dev-crash: pid {} crashes", std::process::id());
}
