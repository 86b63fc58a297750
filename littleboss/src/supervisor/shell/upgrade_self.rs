//! The supervisor's own upgrade: the probe of the new binary, the handover of
//! everything it holds, and the exec.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::control::protocol::Versions;
use crate::logger::Level;

use super::Shell;
use crate::supervisor::child_io::{self, Outgoing, Parked};
use crate::supervisor::handover::{
    self, Handover, HandoverError, HeldChild, HeldClient, HeldFd, STATE_VERSION,
};
use crate::supervisor::machine::{ChildId, Input, Signal};
use crate::supervisor::state::ProgramRecord;
use crate::supervisor::upgrade;

impl Shell {
    /// The handover as it would be now (the probe reads it; an exec passes it on).
    pub(super) fn handover(&self) -> Handover {
        let fds = self
            .fds
            .entries()
            .map(|(key, fd, file)| HeldFd {
                key,
                fd: handover::raw(&fd),
                file: file.cloned(),
            })
            .collect();
        let children = self
            .children
            .iter()
            .map(|(id, handle)| {
                let parked = handle.parked.as_ref();
                HeldChild {
                    id: *id,
                    pid: handle.pid,
                    channel: parked.map_or(-1, |p| handover::raw(&p.channel)),
                    pidfd: parked.and_then(|p| p.pidfd.as_ref().map(handover::raw)),
                    version: child_io::spoken(&handle.version),
                }
            })
            .collect();
        let clients = self
            .held
            .iter()
            .map(|(id, held)| HeldClient {
                id: *id,
                fd: handover::raw(&held.stream),
                version: held.version,
            })
            .collect();
        Handover {
            versions: Versions::ours(),
            now: self.now(),
            dev: self.dev,
            state: self.machine.state().clone(),
            fds,
            children,
            control: handover::raw(&self.control),
            socket: self.socket.path().unwrap_or_default(),
            lock: handover::raw(&self.lock),
            clients,
            next_client: self.next_client,
            args: self.args.clone(),
            moves: self.machine.moves_record(),
        }
    }

    /// Asks the upgrade's binary, off the loop, whether it can take over: with the
    /// state in this build's newest version, then, while it says no, in each version
    /// before (a binary of a release that reads only those). The answer is the
    /// version it read.
    pub(super) fn probe(&mut self, program: &ProgramRecord) {
        let handover = self.handover();
        let blobs: Vec<_> = (1..=STATE_VERSION)
            .rev()
            .map(|version| (version, handover.encode(version)))
            .collect();
        let exe = self
            .fds
            .get(program.exe)
            .and_then(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0).ok());
        let inputs = self.inputs_tx.clone();
        tokio::spawn(async move {
            let result = match exe {
                Some(exe) => tokio::task::spawn_blocking(move || probe_versions(&exe, blobs))
                    .await
                    .unwrap_or_else(|e| Err(format!("the probe failed: {e}"))),
                None => Err("its fd is gone".to_string()),
            };
            let _ = inputs.send(Input::Probed { result });
        });
    }

    /// Re-executes the supervisor as `program`, handing everything over; returns only
    /// if that did not happen (and then the supervisor goes on as it was).
    pub(super) async fn exec(
        &mut self,
        program: ProgramRecord,
        state_version: u16,
        signals: [&mut tokio::signal::unix::Signal; 3],
    ) {
        crate::signals::block(true);
        // A signal that arrived before the block is handled here, not lost in the exec.
        let [term, int, hup] = signals;
        let pending = tokio::select! {
            biased;
            _ = term.recv() => Some(Signal::Term),
            _ = int.recv() => Some(Signal::Int),
            _ = hup.recv() => Some(Signal::Hup),
            () = std::future::ready(()) => None,
        };
        if let Some(signal) = pending {
            return self.exec_failed(format!("{signal:?} arrived"), Some(signal));
        }
        // Each child's task hands its fds back after what it was asked to send; what
        // it received is in the inputs by then.
        let mut waits = Vec::new();
        for (id, handle) in &self.children {
            let (tx, rx) = oneshot::channel();
            if handle.outgoing.send(Outgoing::Handback(tx)).is_ok() {
                waits.push((*id, rx));
            }
        }
        for (id, rx) in waits {
            if let Ok(Ok(parked)) = tokio::time::timeout(Duration::from_secs(2), rx).await {
                if let Some(handle) = self.children.get_mut(&id) {
                    handle.parked = Some(parked);
                }
            }
        }
        self.server.abort();
        let _ = (&mut self.server).await;
        // Let the requests already accepted be answered (a stop cancels the upgrade).
        self.connections.drain(Duration::from_millis(200)).await;
        self.drain_scrapes(Duration::from_millis(200)).await;
        while let Ok(input) = self.inputs.try_recv() {
            self.handle(input);
        }
        while let Ok(incoming) = self.requests.try_recv() {
            self.incoming(incoming);
        }
        // Connections handed over meanwhile and held here go back: no exec carries
        // their fds.
        self.machine.return_held();
        self.carry_out();
        let unparked = self.children.values().any(|h| h.parked.is_none());
        if !self.machine.exec_wanted() || unparked {
            let why = if unparked {
                "a child's task did not hand its channel back".to_string()
            } else {
                "cancelled".to_string()
            };
            return self.exec_failed(why, None);
        }
        let handover = self.handover();
        let result = match handover.encode(state_version) {
            Ok(blob) => handover::in_memory(&blob).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let file = match result {
            Ok(file) => file,
            Err(e) => return self.exec_failed(e, None),
        };
        let raws = handover.raw_fds();
        let mut inherit: Vec<BorrowedFd<'_>> = raws
            .iter()
            .map(|raw| {
                // SAFETY: each number is an fd this process holds open (the table, the
                // parked children, the held clients, the control socket and the lock)
                // for as long as these borrows live: nothing is closed until the exec
                // or its failure.
                unsafe { BorrowedFd::borrow_raw(*raw) }
            })
            .collect();
        inherit.push(file.as_fd());
        let reason = match (
            self.fds.get(program.exe),
            handover::set_cloexec(&inherit, false),
        ) {
            (Some(exe), Ok(())) => {
                self.log(
                    Level::Info,
                    &format!(
                        "re-executing as {} (upgrade state version {state_version})",
                        program.path.display()
                    ),
                );
                // The lines queued for the log go out before the exec, which would
                // drop them with this image (a stalled log waits no longer than this).
                self.config.logger.flush(Duration::from_millis(200));
                upgrade::exec(exe, &self.args, file.as_fd()).to_string()
            }
            (None, _) => "its fd is gone".to_string(),
            (_, Err(e)) => e.to_string(),
        };
        let _ = handover::set_cloexec(&inherit, true);
        drop(file);
        self.exec_failed(reason, None);
    }

    /// Lets the scrapes of the metrics' listener under way be answered, `limit` at most,
    /// reading the state for them meanwhile: the exec would close their sockets and
    /// leave a scraper with no answer. What comes meanwhile waits in the listener's
    /// queue for the next image.
    #[cfg(feature = "metrics")]
    async fn drain_scrapes(&mut self, limit: Duration) {
        self.scrape.pause();
        let answered = self.scrape.answered();
        let mut answered = std::pin::pin!(answered);
        let deadline = tokio::time::sleep(limit);
        let mut deadline = std::pin::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                () = answered.as_mut() => break,
                Some(read) = self.readers.recv() => read(self.machine.state()),
                () = deadline.as_mut() => break,
            }
        }
    }

    #[cfg(not(feature = "metrics"))]
    async fn drain_scrapes(&mut self, _limit: Duration) {}

    /// The exec did not happen: the children's tasks and the control server run again,
    /// signals are delivered again, and the machine is told.
    pub(super) fn exec_failed(&mut self, reason: String, signal: Option<Signal>) {
        let parked: Vec<(ChildId, u32, Parked, Arc<AtomicU16>)> = self
            .children
            .iter_mut()
            .filter_map(|(id, h)| {
                let parked = h.parked.take()?;
                Some((*id, h.pid, parked, Arc::clone(&h.version)))
            })
            .collect();
        for (id, pid, parked, version) in parked {
            self.start_task(id, pid, parked, version);
        }
        if self.server.is_finished() {
            if let Err(e) = self.serve() {
                self.log(Level::Warn, &e.to_string());
            }
        }
        crate::signals::block(false);
        self.handle(Input::ExecFailed { reason });
        if let Some(signal) = signal {
            self.handle(Input::Signal(signal));
        }
    }
}

/// Probes `exe` with each of `blobs` (a state version and the state in it), newest
/// first, while it answers no (a binary that does not answer, or not in time, is not
/// asked again): the version it read, or why the last said no.
fn probe_versions(
    exe: &OwnedFd,
    blobs: Vec<(u16, Result<Vec<u8>, HandoverError>)>,
) -> Result<u16, String> {
    let mut why = String::from("not probed");
    for (version, blob) in blobs {
        let blob = blob.map_err(|e| e.to_string())?;
        match upgrade::probe(exe.as_fd(), &blob) {
            Ok(()) => return Ok(version),
            Err(no @ upgrade::ProbeError::No(_)) => why = no.to_string(),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(why)
}
