//! Picks the mode from the command line and runs it.

use std::process::ExitCode;

use crate::builder::Config;
use crate::context::Context;

pub(crate) fn run(
    _config: Config,
    _main: impl FnOnce(Context) -> Result<(), String>,
) -> ExitCode {
    ExitCode::FAILURE
}
