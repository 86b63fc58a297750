//! The signals that wind a program down: SIGINT and SIGTERM in bypass mode, as a plain
//! program would take them; SIGTERM in a supervised child, which the kernel sends when
//! the supervisor dies (see [`sys::term_when_parent_dies`](crate::sys::term_when_parent_dies))
//! and a service manager sends at stop.
//!
//! The first one sets lameduck, so the program finishes its work in flight. In bypass
//! mode the second exits at once, as an impatient operator means it to. A supervised
//! child takes every further one as the same lameduck: the kernel sends the parent-death
//! signal again each time the dying supervisor's child-holding thread passes the child
//! to another of its threads, so one death can bring several; a child whose supervisor
//! is gone ends itself after its lameduck time (`child::watch_supervisor`), and a live
//! supervisor kills a child that does not wind down in time.
//!
//! The handlers live on a thread of their own, so a program that never polls a runtime
//! still winds down.

use std::io;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::output::errln;

/// What a second signal does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Again {
    /// Exits at once (130).
    Exit,
    /// Nothing more: lameduck is set already. The thread ends, and the handler tokio
    /// installed stays (it never removes one), so the signal no longer has its default
    /// effect.
    Nothing,
}

/// Installs the handlers for `kinds` and returns once they are in place, so that a
/// signal right after start-up winds the program down instead of killing it.
pub(crate) fn on_signals(
    kinds: &[SignalKind],
    again: Again,
    lameduck: watch::Sender<bool>,
) -> io::Result<()> {
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
                if again == Again::Nothing {
                    return;
                }
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A supervised child's handlers: several SIGTERMs (as one supervisor's death can
    /// bring) set lameduck once and end nothing. This test process keeps running.
    #[test]
    fn several_sigterms_to_a_supervised_child_are_one_lameduck() {
        let (tx, rx) = watch::channel(false);
        on_signals(&SUPERVISED, Again::Nothing, tx).expect("handlers");
        let me = rustix::process::getpid();
        for _ in 0..3 {
            rustix::process::kill_process(me, rustix::process::Signal::TERM).expect("kill");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !*rx.borrow() {
            assert!(Instant::now() < deadline, "no lameduck after SIGTERM");
            std::thread::sleep(Duration::from_millis(5));
        }
        // More after lameduck: still nothing but lameduck.
        rustix::process::kill_process(me, rustix::process::Signal::TERM).expect("kill");
        std::thread::sleep(Duration::from_millis(100));
        assert!(*rx.borrow());
    }
}
