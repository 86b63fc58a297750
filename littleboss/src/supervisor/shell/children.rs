//! The effects on children: starting one, giving it its listeners, sending it
//! messages and connections, killing and reaping it.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::SystemTime;

use rustix::process::{Pid, Signal as OsSignal};
use tokio::sync::mpsc;

use crate::channel;
use crate::control::protocol::{
    ChildMsg, ListenerInfo, Parcel, SupervisorMsg, TLS_MOVES_SINCE, TlsParcel, parcel_batches,
};
use crate::socket;
use crate::sys;

use super::Shell;
use crate::supervisor::child_io::{self, ChildIo, Outgoing, Parked};
use crate::supervisor::machine::{ChildId, Input};
use crate::supervisor::spawn;
use crate::supervisor::state::{ListenerRecord, ProgramRecord};

/// What the shell knows of a child the machine started: where to send, whom to kill.
#[derive(Debug)]
pub(super) struct Handle {
    pub(super) pid: u32,
    pub(super) outgoing: mpsc::UnboundedSender<Outgoing>,
    /// The protocol version of its hello (0 until then).
    pub(super) version: Arc<AtomicU16>,
    /// Its fds, while its task has handed them back (an exec is being readied).
    pub(super) parked: Option<Parked>,
}

/// SIGKILL to the child's process group (its pid, as it was started with
/// `process_group(0)`), and to the child itself in case it left the group. It is not
/// reaped yet, so the pid is still its own.
pub(super) fn kill(pid: u32) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, OsSignal::KILL);
        let _ = rustix::process::kill_process(pid, OsSignal::KILL);
    }
}

impl Shell {
    pub(super) fn spawn(&mut self, child: ChildId, program: &ProgramRecord, argv: &[OsString]) {
        let spawned = match self.fds.get(program.exe) {
            Some(exe) => {
                spawn::spawn(exe, &program.path, argv, self.run_as.as_ref()).map_err(|e| {
                    let reason = format!(
                        "cannot start {}: {}",
                        program.path.display(),
                        socket::describe(&e)
                    );
                    (reason, e.raw_os_error() == Some(libc::ETXTBSY))
                })
            }
            None => Err((
                format!("cannot start {}: its fd is gone", program.path.display()),
                false,
            )),
        };
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err((reason, busy)) => {
                return self.handle(Input::SpawnFailed {
                    child,
                    reason,
                    busy,
                });
            }
        };
        self.start_task(
            child,
            spawned.pid,
            Parked {
                channel: spawned.channel,
                pidfd: spawned.pidfd,
            },
            Arc::new(AtomicU16::new(0)),
        );
        self.handle(Input::Spawned {
            child,
            pid: spawned.pid,
            started: SystemTime::now(),
        });
    }

    /// The listeners for a hello: names and addresses, and a copy of each fd that is on.
    pub(super) fn welcome(&mut self, child: ChildId, listeners: &[ListenerRecord]) {
        let mut infos = Vec::with_capacity(listeners.len());
        let mut fds = Vec::new();
        for record in listeners {
            // The metrics' listener is the supervisor's own: off for every child.
            let ours = self.config.metrics.as_ref() == Some(&record.name);
            let bound = record.bound.as_ref().filter(|_| !ours);
            let dup = bound.and_then(|(addr, key)| {
                let fd = self.fds.get(*key)?;
                let fd = rustix::io::fcntl_dupfd_cloexec(fd, 0).ok()?;
                Some((addr.to_string(), fd))
            });
            // A listener whose fd cannot be copied is off for this child.
            let addr = dup.map(|(addr, fd)| {
                fds.push(fd);
                addr
            });
            infos.push(ListenerInfo {
                name: record.name.clone(),
                network: record.network,
                addr,
            });
        }
        self.send(child, SupervisorMsg::Welcome { listeners: infos }, fds);
    }

    /// Sends `msg` with `fds` to `child`; a long list of ids goes in several messages.
    pub(super) fn send(&self, child: ChildId, msg: SupervisorMsg, fds: Vec<OwnedFd>) {
        let mut fds = Some(fds);
        for msg in msg.in_batches(channel::BATCH_BYTES) {
            self.send_one(child, msg, fds.take().unwrap_or_default());
        }
    }

    fn send_one(&self, child: ChildId, msg: SupervisorMsg, fds: Vec<OwnedFd>) {
        let Some(handle) = self.children.get(&child) else {
            return;
        };
        match &handle.parked {
            None => {
                let _ = handle.outgoing.send(Outgoing::Message(msg, fds));
            }
            // Its task has handed the channel back: send from here (a short message
            // that does not wait; a child that does not read loses it, and its exit or
            // its deadline is what counts).
            Some(parked) => {
                let Some(bytes) = msg.encode_for(child_io::spoken(&handle.version)) else {
                    return;
                };
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
                let _ = channel::send(parked.channel.as_fd(), &bytes, &borrowed);
            }
        }
    }

    /// Starts the task that moves a child's messages and reports its exit; `version`
    /// is the version of its hello (0 until it says hello), shared with the task.
    pub(super) fn start_task(
        &mut self,
        child: ChildId,
        pid: u32,
        parked: Parked,
        version: Arc<AtomicU16>,
    ) {
        let (outgoing_tx, outgoing) = mpsc::unbounded_channel();
        self.children.insert(
            child,
            Handle {
                pid,
                outgoing: outgoing_tx,
                version: Arc::clone(&version),
                parked: None,
            },
        );
        tokio::spawn(
            ChildIo {
                id: child,
                pid,
                pidfd: parked.pidfd,
                channel: parked.channel,
                outgoing,
                inputs: self.inputs_tx.clone(),
                version,
                parcels: Arc::clone(&self.parcels),
            }
            .run(),
        );
    }

    /// Sends `to` the connections `from` handed over, each with its fd, and a TLS one
    /// with its session. A TLS one cannot go to a child whose protocol has no TLS
    /// connections (before 7): it declines it, as it would a connection of a kind it
    /// does not serve, and the sender winds it down.
    pub(super) fn forward(&mut self, from: ChildId, to: ChildId, parcels: Vec<(u64, Parcel)>) {
        let speaks_tls = (self.children.get(&to))
            .and_then(|handle| child_io::spoken(&handle.version))
            .is_some_and(|v| v >= TLS_MOVES_SINCE);
        let (mut plain, mut tls, mut declined) = (Vec::new(), Vec::new(), Vec::new());
        for (theirs, parcel) in parcels {
            match self.parcels.take(from, theirs) {
                Some((fd, None)) => plain.push((parcel, fd)),
                Some((fd, Some(session))) if speaks_tls => {
                    tls.push((TlsParcel { parcel, session }, fd));
                }
                Some((_, Some(_))) => declined.push(parcel.id),
                None => {}
            }
        }
        for batch in parcel_batches(plain, channel::MAX_FDS, channel::BATCH_BYTES) {
            let (forwarded, fds) = batch.into_iter().unzip();
            self.send(to, SupervisorMsg::Adopt(forwarded), fds);
        }
        for batch in parcel_batches(tls, channel::MAX_FDS, channel::BATCH_BYTES) {
            let (forwarded, fds) = batch.into_iter().unzip();
            self.send(to, SupervisorMsg::AdoptTls(forwarded), fds);
        }
        if !declined.is_empty() {
            let msg = ChildMsg::Declined(declined);
            let _ = self.inputs_tx.send(Input::Message { child: to, msg });
        }
    }

    /// Sends `to` the state-transfer message `msg` with the fds of the oldest state
    /// message of `from` held; the shell's copies close once it is sent.
    pub(super) fn relay_state(&mut self, from: ChildId, to: ChildId, msg: SupervisorMsg) {
        let fds = self.parcels.take_state(from);
        self.send(to, msg, fds);
    }

    /// Closes the fds of the oldest state message of `from` held.
    pub(super) fn drop_state(&mut self, from: ChildId) {
        drop(self.parcels.take_state(from));
    }

    /// Measures how many more fds `child` can open, for the machine.
    pub(super) fn measure_room(&mut self, child: ChildId) {
        let free = self.children.get(&child).and_then(|h| sys::free_fds(h.pid));
        if let Some(free) = free {
            let _ = self.inputs_tx.send(Input::Room { child, free });
        }
    }

    /// Gives `child` back the connections it handed over, closing the shell's copies.
    pub(super) fn give_back(&mut self, child: ChildId, ids: Vec<u64>) {
        for id in &ids {
            drop(self.parcels.take(child, *id));
        }
        self.send(child, SupervisorMsg::Returned(ids), Vec::new());
    }

    /// SIGKILL to the child's process group.
    pub(super) fn kill_child(&mut self, child: ChildId) {
        if let Some(handle) = self.children.get(&child) {
            kill(handle.pid);
        }
    }

    /// Reaps the exited child and forgets it, with the connections it still had here.
    pub(super) fn reap(&mut self, child: ChildId) {
        self.parcels.drop_child(child);
        if let Some(handle) = self.children.remove(&child) {
            child_io::reap(handle.pid);
        }
    }
}
