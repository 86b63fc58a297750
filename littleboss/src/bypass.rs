//! Bypass mode: the program binds its own listeners and runs directly.

use std::process::ExitCode;

use tokio::sync::watch;

use crate::config::Config;
use crate::context::{Slot, SlotState};
use crate::error::Error;
use crate::output::errln;
use crate::socket;
use crate::socket::activation::Activated;
use crate::spec::ListenerSpec;
use crate::wind_down;

/// Opens every listener that is on (adopting sockets systemd passed); the first
/// failure is the error.
pub(crate) fn bind_all(
    specs: &[(String, ListenerSpec)],
    config: &Config,
    activated: Activated,
) -> Result<Vec<Slot>, Error> {
    // The metrics' listener is the supervisor's: with none, it is not bound.
    let metrics = config.metrics.as_deref();
    let (ours, theirs): (Vec<_>, Vec<_>) =
        (specs.iter().cloned()).partition(|(name, _)| Some(name.as_str()) != metrics);
    let (opened, unused) = socket::open_all(&ours, config.unix_mode, activated)?;
    for name in unused {
        errln!(
            "littleboss: systemd passed a socket named {name:?} that no listener declares; closed it"
        );
    }
    Ok(opened
        .into_iter()
        .map(|(name, network, bound)| Slot {
            name,
            network,
            state: bound.map_or(SlotState::Off, |b| SlotState::Open(b.fd)),
        })
        .chain(theirs.into_iter().map(|(name, spec)| Slot {
            name,
            network: spec.network,
            state: SlotState::Supervisor,
        }))
        .collect())
}

/// Sets lameduck on the first SIGINT or SIGTERM, and exits at once on the second.
pub(crate) fn watch_signals() -> Result<watch::Receiver<bool>, ExitCode> {
    let (tx, rx) = watch::channel(false);
    match wind_down::on_signals(&wind_down::BYPASS, wind_down::Again::Exit, tx) {
        Ok(()) => Ok(rx),
        Err(e) => {
            errln!("littleboss: cannot install the SIGINT/SIGTERM handlers: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}
