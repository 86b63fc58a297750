//! The child's side of the channel: hello, the listeners, ready, lameduck.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::io::FdFlags;
use rustix::net::RecvFlags;
use tokio::sync::watch;

use crate::channel::{self, CHANNEL_ENV};
use crate::config::Config;
use crate::context::{ReadySink, Slot, SlotState};
use crate::control::protocol::{self, ChildHello, ChildMsg, SupervisorMsg};

/// How long the child waits for the supervisor's answer to its hello.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes the channel fd that a supervisor left in the environment, if any, and removes
/// the variable so that the program's own children do not take themselves for ours.
///
/// Must run before the process starts any thread (it is the first thing `run` does).
pub(crate) fn take_channel() -> Option<Result<OwnedFd, String>> {
    let value = std::env::var_os(CHANNEL_ENV)?;
    // SAFETY: littleboss calls this first thing in `main`, before the program or the
    // runtime has started any thread, so nothing reads the environment concurrently.
    unsafe { std::env::remove_var(CHANNEL_ENV) };
    let Some(raw) = value.to_str().and_then(|v| v.parse::<i32>().ok()) else {
        return Some(Err(format!("{CHANNEL_ENV}={value:?} is not an fd number")));
    };
    if raw < 0 {
        return Some(Err(format!("{CHANNEL_ENV}={raw} is not an fd number")));
    }
    // SAFETY: a syscall on an fd number that may be closed is memory-safe; it fails with
    // EBADF, and the borrow does not outlive this expression.
    let open = rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(raw) });
    if open.is_err() {
        return Some(Err(format!("{CHANNEL_ENV}={raw} is not an open fd")));
    }
    // SAFETY: the fd is open (checked above), the supervisor left it for this process
    // alone, and the environment variable, now removed, was its only record: nothing
    // else in the process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // The program's own children must not inherit it.
    if let Err(e) = rustix::io::fcntl_setfd(&fd, FdFlags::CLOEXEC) {
        return Some(Err(format!("{CHANNEL_ENV}: {e}")));
    }
    Some(Ok(fd))
}

/// What the child has once the supervisor welcomed it.
pub(crate) struct Joined {
    pub slots: Vec<Slot>,
    pub lameduck: watch::Receiver<bool>,
    pub link: Arc<Link>,
}

/// The child's end of the channel, shared by `ready()` and the final message.
#[derive(Debug)]
pub(crate) struct Link {
    fd: OwnedFd,
}

impl Link {
    fn send(&self, msg: &ChildMsg) {
        // If the supervisor is gone there is nobody to tell; the reader thread has seen
        // the channel close and set lameduck already.
        let _ = channel::send(self.fd.as_fd(), &protocol::encode(msg), &[]);
    }

    /// Reports how the program's main ended.
    pub(crate) fn finished(&self, result: &Result<(), String>) {
        self.send(&ChildMsg::Finished(result.clone()));
    }
}

impl ReadySink for Arc<Link> {
    fn ready(&self) {
        self.send(&ChildMsg::Ready);
    }
}

/// Says hello, receives the listeners, and starts the thread that watches for lameduck.
pub(crate) fn join(config: &Config, fd: OwnedFd) -> io::Result<Joined> {
    let hello = ChildMsg::Hello(ChildHello {
        name: config.name.clone(),
        pid: std::process::id(),
        calls_ready: config.calls_ready,
        settle_ms: millis(config.settle),
        ready_timeout_ms: millis(config.ready_timeout),
        lameduck_ms: millis(config.lameduck),
    });
    channel::send(fd.as_fd(), &protocol::encode(&hello), &[])?;
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(WELCOME_TIMEOUT),
    )?;
    let received = channel::recv(fd.as_fd(), RecvFlags::empty())
        .map_err(|e| io::Error::new(e.kind(), format!("waiting for the supervisor: {e}")))?
        .ok_or_else(|| io::Error::other("the supervisor closed the channel before answering"))?;
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, None)?;
    let msg: SupervisorMsg = protocol::decode(&received.bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("supervisor: {e}")))?;
    let listeners = match msg {
        SupervisorMsg::Welcome { listeners } => listeners,
        SupervisorMsg::Refused { reason } => {
            return Err(io::Error::other(format!(
                "the supervisor refused this binary: {reason}"
            )));
        }
        SupervisorMsg::Lameduck => {
            return Err(io::Error::other(
                "the supervisor sent lameduck before the listeners",
            ));
        }
    };
    let expected = listeners.iter().filter(|l| l.addr.is_some()).count();
    if received.fds.len() != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the supervisor sent {} fds for {expected} listeners",
                received.fds.len()
            ),
        ));
    }
    let mut fds = received.fds.into_iter();
    let slots = listeners
        .into_iter()
        .map(|info| Slot {
            name: info.name,
            network: info.network,
            state: match info.addr {
                Some(_) => fds.next().map_or(SlotState::Off, SlotState::Open),
                None => SlotState::Off,
            },
        })
        .collect();
    let link = Arc::new(Link { fd });
    let (tx, rx) = watch::channel(false);
    let reader = Arc::clone(&link);
    std::thread::Builder::new()
        .name("littleboss-channel".into())
        .spawn({
            let lameduck_time = config.lameduck;
            move || watch_supervisor(&reader, &tx, lameduck_time)
        })?;
    Ok(Joined {
        slots,
        lameduck: rx,
        link,
    })
}

/// Sets lameduck when the supervisor asks for it or goes away.
///
/// When the supervisor is gone, nobody is left to kill a program that does not wind
/// down: after its lameduck time the child kills its own process group, as the
/// supervisor would have, so that no orphan keeps the listeners forever.
fn watch_supervisor(link: &Link, lameduck: &watch::Sender<bool>, lameduck_time: Duration) {
    loop {
        match channel::recv(link.fd.as_fd(), RecvFlags::empty()) {
            Ok(Some(msg)) => match protocol::decode::<SupervisorMsg>(&msg.bytes) {
                Ok(SupervisorMsg::Lameduck) => {
                    lameduck.send_replace(true);
                }
                Ok(_) | Err(_) => {
                    errln!("littleboss: unexpected message from the supervisor; winding down");
                    lameduck.send_replace(true);
                }
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(None) | Err(_) => {
                lameduck.send_replace(true);
                std::thread::sleep(lameduck_time);
                errln!(
                    "littleboss: the supervisor is gone and the program did not wind down within {lameduck_time:?}; exiting"
                );
                let _ = rustix::process::kill_current_process_group(rustix::process::Signal::KILL);
                std::process::exit(1);
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
