//! Bypass mode: the program binds its own listeners and runs directly.

use std::process::ExitCode;

use tokio::sync::watch;

use crate::context::{Slot, SlotState};
use crate::error::Error;
use crate::output::errln;
use crate::socket;
use crate::socket::activation::Activated;
use crate::spec::ListenerSpec;

/// Opens every listener that is on (adopting sockets systemd passed); the first
/// failure is the error.
pub(crate) fn bind_all(
    specs: &[(String, ListenerSpec)],
    unix_mode: Option<u32>,
    activated: Activated,
) -> Result<Vec<Slot>, Error> {
    let (opened, unused) = socket::open_all(specs, unix_mode, activated)?;
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
        .collect())
}

/// Sets lameduck on the first SIGINT or SIGTERM, and exits at once on the second.
pub(crate) fn watch_signals() -> Result<watch::Receiver<bool>, ExitCode> {
    let (tx, rx) = watch::channel(false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            errln!("littleboss: cannot start the signal runtime: {e}");
            ExitCode::FAILURE
        })?;
    let (registered_tx, registered_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("littleboss-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    let _ = registered_tx.send(false);
                    return;
                };
                let _ = registered_tx.send(true);
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tx.send_replace(true);
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                errln!("littleboss: second signal; exiting now");
                std::process::exit(130);
            });
        });
    // Wait until the handlers are installed, so that a signal right after start-up
    // winds the program down instead of killing it.
    match spawned.map(|_| registered_rx.recv()) {
        Ok(Ok(true)) => Ok(rx),
        _ => {
            errln!("littleboss: cannot install the SIGINT/SIGTERM handlers");
            Err(ExitCode::FAILURE)
        }
    }
}
