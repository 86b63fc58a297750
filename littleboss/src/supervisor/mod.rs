//! The supervisor: holds the listeners, starts and watches the child, reloads it with
//! an overlap, and answers the control socket.
//!
//! Each file does one of three things:
//!
//! - sets up: [`setup`] (the lock, the listeners, the control socket), [`user`];
//! - decides: [`machine`], a state machine with no I/O that takes inputs and the time
//!   and returns effects;
//! - carries out: [`shell`] (the loop that feeds the machine and does what it says),
//!   [`child_io`] (one task per child that moves its messages and reports its exit),
//!   [`prepare`] (a reload's binary and listeners, off the loop), [`watch_build`] (dev
//!   mode: new builds of the executable), [`spawn`] (with [`script`]), [`notify`],
//!   [`reap`] and [`descendants`] (what is left of the service), and [`fds`], the table
//!   of fds the state refers to.

mod child_io;
mod complete_exe;
mod descendants;
mod fds;
mod handover;
mod machine;
#[cfg(feature = "metrics")]
mod metrics;
mod notify;
mod parcels;
mod prepare;
mod reap;
#[cfg(feature = "metrics")]
mod scrape;
mod script;
mod setup;
mod shell;
mod spawn;
mod state;
mod upgrade;
mod user;
mod watch_build;

pub(crate) use upgrade::answer_probe;

use std::ffi::OsString;
use std::process::ExitCode;

use crate::config::{Config, SupervisorInit};
use crate::error::{Error, Failed};
use crate::output::errln;
use crate::socket::activation::Activated;
use crate::spec::ListenerSpec;

/// `--littleboss=start`: runs the supervisor in the foreground until it is stopped.
pub(crate) fn start(
    config: Config,
    init: Option<SupervisorInit>,
    specs: Vec<(String, ListenerSpec)>,
    activated: Activated,
    args: Vec<OsString>,
) -> Result<ExitCode, Failed> {
    run(config, init, specs, activated, args, false)
}

/// `--littleboss=dev`: as `start`, and every new build that lands at the executable's
/// path reloads; a child that exits waits for the next build instead of ending it.
pub(crate) fn dev(
    config: Config,
    init: Option<SupervisorInit>,
    specs: Vec<(String, ListenerSpec)>,
    activated: Activated,
    args: Vec<OsString>,
) -> Result<ExitCode, Failed> {
    run(config, init, specs, activated, args, true)
}

fn run(
    config: Config,
    init: Option<SupervisorInit>,
    specs: Vec<(String, ListenerSpec)>,
    activated: Activated,
    args: Vec<OsString>,
    dev: bool,
) -> Result<ExitCode, Failed> {
    let name = config.name.clone();
    let logger = config.logger.clone();
    if cfg!(feature = "test-hooks") {
        // Said once, so that a binary that reads the test variables is never mistaken
        // for one that ignores them.
        logger.log(crate::logger::Level::Info, &name, "built with test hooks");
    }
    let setup = setup::Setup::new(&config, specs, activated, args).map_err(|e| {
        logger.flush(std::time::Duration::from_secs(1));
        let line = format!("littleboss: {name}: {e}");
        Failed::new(e, line, 1)
    })?;
    // Once, in the supervisor only: after the listeners are bound, before any child.
    if let Some(init) = init {
        init().map_err(|e| {
            let line = format!("littleboss: {name}: supervisor init failed: {e}");
            Failed::new(Error::Init { message: e }, line, 1)
        })?;
    }
    let Some(runtime) = runtime(&name) else {
        return Ok(ExitCode::FAILURE);
    };
    let own_args = std::env::args_os().collect();
    let socket = setup.socket.path().unwrap_or_default();
    let shell = runtime.block_on(async { shell::Shell::new(config, setup, dev, own_args) });
    let shell = shell.map_err(|e| {
        let line = format!("littleboss: {name}: {e}");
        Failed::new(e.into_error(socket), line, 1)
    })?;
    let code = runtime.block_on(shell.run());
    // The last lines (`stopped`...) reach the log, unless its reader is stuck.
    logger.flush(std::time::Duration::from_secs(1));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// A supervisor that an upgrade's exec started, if this process is one: it takes over
/// from its previous image and runs until it is stopped.
pub(crate) fn resume(config: &Config) -> Option<ExitCode> {
    let taken = handover::take()?;
    let name = config.name.clone();
    let (handover, fds) = match taken {
        Ok(taken) => taken,
        Err(e) => {
            errln!("littleboss: {name}: cannot take over from the previous supervisor: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    let run_as = match user::resolve(config.user.as_deref(), config.group.as_deref()) {
        Ok(run_as) => run_as,
        Err(e) => {
            errln!("littleboss: {name}: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    let runtime = runtime(&name)?;
    let config = config.clone();
    let code = runtime.block_on(async move {
        match shell::Shell::resume(config, handover, fds, run_as) {
            Ok(shell) => shell.run().await,
            Err(e) => {
                errln!("littleboss: {name}: {e}");
                1
            }
        }
    });
    Some(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The supervisor's runtime: one thread for the loop; the blocking pool's threads never
/// take the signals the loop handles (see `signals`).
fn runtime(name: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(|| crate::signals::block(true))
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            errln!("littleboss: {name}: cannot start the runtime: {e}");
            None
        }
    }
}
