//! `lb-probe-leaver`: not a littleboss program, but one that answers the supervisor's
//! upgrade probe as one would, after leaving a process behind that keeps the probe's
//! stdout open, for `tests/upgrade.rs`: the probe's time limit must count until the
//! probe exits, and what it leaves behind must go with it.
//!
//! Run as the probe (`LITTLEBOSS_UPGRADE_PROBE` set), it starts `sleep 600` with its
//! own stdout, writes that process's pid to the file `LB_PROBE_LEAVER_PIDS` names,
//! says `littleboss-probe: no: it left a process behind`, and exits. Run otherwise, it
//! exits with code 2.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    if std::env::var_os("LITTLEBOSS_UPGRADE_PROBE").is_none() {
        return ExitCode::from(2);
    }
    let Ok(left) = Command::new("sleep").arg("600").spawn() else {
        return ExitCode::from(3);
    };
    if let Some(path) = std::env::var_os("LB_PROBE_LEAVER_PIDS") {
        let _ = std::fs::write(path, left.id().to_string());
    }
    println!("littleboss-probe: no: it left a process behind");
    ExitCode::FAILURE
}
