//! The signals that wind a program down: SIGINT and SIGTERM in bypass mode, as a plain
//! program would take them; SIGTERM in a supervised child, which the kernel sends when
//! the supervisor dies (see [`sys::term_when_parent_dies`](crate::sys::term_when_parent_dies))
//! and a service manager sends at stop.
//!
//! The first one sets lameduck, so the program finishes its work in flight; the second
//! exits at once. The handlers live on a thread of their own, so a program that never
//! polls a runtime still winds down.

use std::io;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::output::errln;

/// Installs the handlers for `kinds` and returns once they are in place, so that a
/// signal right after start-up winds the program down instead of killing it.
pub(crate) fn on_signals(kinds: &[SignalKind], lameduck: watch::Sender<bool>) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let kinds = kinds.to_vec();
    let (registered_tx, registered_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("littleboss-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                let (got_tx, mut got) = mpsc::unbounded_channel();
                for kind in kinds {
                    let mut stream = match signal(kind) {
                        Ok(stream) => stream,
                        Err(e) => {
                            let _ = registered_tx.send(Err(e));
                            return;
                        }
                    };
                    let got_tx = got_tx.clone();
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() {
                            let _ = got_tx.send(());
                        }
                    });
                }
                let _ = registered_tx.send(Ok(()));
                let _ = got.recv().await;
                lameduck.send_replace(true);
                let _ = got.recv().await;
                errln!("littleboss: second signal; exiting now");
                std::process::exit(130);
            });
        })?;
    registered_rx.recv().map_err(|_| {
        io::Error::other("the signal thread ended before its handlers were in place")
    })?
}

/// SIGINT and SIGTERM, for bypass mode.
pub(crate) const BYPASS: [SignalKind; 2] = [SignalKind::interrupt(), SignalKind::terminate()];

/// SIGTERM, for a supervised child.
pub(crate) const SUPERVISED: [SignalKind; 1] = [SignalKind::terminate()];
