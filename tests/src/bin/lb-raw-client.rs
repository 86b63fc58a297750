//! `lb-raw-client SOCKET REQUEST`: a control client that speaks hand-encoded frames
//! and prints what the supervisor answered, one line on stdout.
//!
//! `REQUEST` is `status` or `stop`. The answer is printed as `failed: REASON`,
//! `stopped: CODE`, `status: child pid PID`, `reloaded: ...`, `closed` (the connection
//! closed without an answer) or `error: ...`. `tests/control_socket.rs` runs it as
//! another user (uid 65534) to check the supervisor's peer-credential check.

use std::path::Path;
use std::process::ExitCode;

use littleboss_tests::attack_support::raw;
use littleboss_tests::attack_support::wire::{self, Response};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(socket), Some(request)) = (args.get(1), args.get(2)) else {
        littleboss_tests::say!("usage: lb-raw-client SOCKET status|stop");
        return ExitCode::from(2);
    };
    let frame = match request.as_str() {
        "status" => wire::status_request(),
        "stop" => wire::stop_request(),
        other => {
            littleboss_tests::say!("lb-raw-client: unknown request {other:?}");
            return ExitCode::from(2);
        }
    };
    match raw::exchange(Path::new(socket), &frame) {
        Ok(Some(Response::Failed { reason })) => println!("failed: {reason}"),
        Ok(Some(Response::Stopped { code })) => println!("stopped: {code}"),
        Ok(Some(Response::Status(status))) => {
            println!("status: child pid {:?}", status.child_pid)
        }
        Ok(Some(Response::Reloaded { new_pid, .. })) => println!("reloaded: new pid {new_pid}"),
        Ok(None) => println!("closed"),
        Err(e) => println!("error: {e}"),
    }
    ExitCode::SUCCESS
}
