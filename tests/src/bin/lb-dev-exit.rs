//! `lb-dev-exit`: a build of service `lbdev` that panics at start, before it is ready
//! (exit code 101), as a build with a bug in its setup does, for the dev mode tests.

#[littleboss::main(name = "lbdev", listener(http = "tcp:127.0.0.1:0"), calls_ready = true)]
fn main() {
    panic!("lb-dev-exit: pid {} fails at start", std::process::id());
}
