//! One task per child that only moves bytes: it reads the child's channel and turns
//! what arrives into inputs, sends what the machine says, and reports the child's
//! exit, without reaping it (the shell kills its group first, then reaps it).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketType, sockopt};
use rustix::process::{Pid, WaitId, WaitIdOptions, WaitIdStatus};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::channel::{self, AsyncChannel};
use crate::control::protocol::{
    self, ChildMsg, MAX_CARRIED, MAX_TLS_CARRIED, Parcel, SupervisorMsg, Versions,
};
use crate::secret::Secret;
use crate::spec::Kind;
use zeroize::Zeroize;

use super::machine::{ChildId, Input, WaitStatus};
use super::parcels::Parcels;

/// How often a child is looked at when neither a pidfd nor `SIGCHLD` can tell of its
/// exit.
const POLL_EXIT: Duration = Duration::from_millis(20);

/// What the shell asks a child's task to send.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A message, with fds (the welcome's listeners).
    Message(SupervisorMsg, Vec<OwnedFd>),
    /// Stop, after what was asked before, and give back the fds: the supervisor is
    /// about to re-execute itself, and the next image takes the child over.
    Handback(oneshot::Sender<Parked>),
}

/// A child's fds, handed back by its task.
#[derive(Debug)]
pub(crate) struct Parked {
    pub channel: OwnedFd,
    pub pidfd: Option<OwnedFd>,
}

/// Everything one child's task needs.
#[derive(Debug)]
pub(crate) struct ChildIo {
    pub id: ChildId,
    pub pid: u32,
    pub pidfd: Option<OwnedFd>,
    pub channel: OwnedFd,
    pub outgoing: mpsc::UnboundedReceiver<Outgoing>,
    pub inputs: mpsc::UnboundedSender<Input>,
    /// The protocol version of its hello, 0 until it is known (a child taken over from
    /// the supervisor's previous image has said hello already).
    pub version: Arc<AtomicU16>,
    /// Where the fds of connections it hands over are held.
    pub parcels: Arc<Parcels>,
}

impl ChildIo {
    /// Runs until the child has exited; its last input is [`Input::Exited`].
    pub(crate) async fn run(self) {
        let ChildIo {
            id,
            pid,
            pidfd,
            channel,
            mut outgoing,
            inputs,
            version,
            parcels,
        } = self;
        // The loop outlives every child task; if it is gone, so is the supervisor.
        let report = |input: Input| {
            let _ = inputs.send(input);
        };
        let mut exited = Exited::new(pid, pidfd);
        let mut channel = match AsyncChannel::new(channel) {
            Ok(channel) => Some(Arc::new(channel)),
            Err(e) => {
                report(Input::ChannelFailed {
                    child: id,
                    reason: format!("its channel failed: {e}"),
                });
                None
            }
        };
        let mut reading = channel.is_some();
        let mut sending = true;
        // What waits to be sent, the one message being written, and a hand-back asked
        // for: nothing here waits on the child, so its exit is always seen.
        let mut queue: VecDeque<(SupervisorMsg, Vec<OwnedFd>)> = VecDeque::new();
        let mut writing: Option<Writing> = None;
        let mut handback: Option<oneshot::Sender<Parked>> = None;
        let mut deaf = false;
        // The kind of each of its listeners, once it is welcomed: a connection it hands
        // over must be one of them.
        let mut kinds: HashMap<String, Kind> = HashMap::new();
        let status = loop {
            if writing.is_none() {
                writing = next_write(channel.as_ref(), &mut queue, &version);
            }
            if writing.is_none() && queue.is_empty() {
                if let Some(back) = handback.take() {
                    match hand_back(back, &mut channel, exited, pid) {
                        Ok(()) => return,
                        Err(again) => exited = again,
                    }
                }
            }
            let stall_at = writing.as_ref().map(|w| w.since + SEND_STALL);
            tokio::select! {
                status = exited.wait() => break status,
                // A child with as many connections held as it may is read again once
                // some have gone on.
                () = parcels.room_for(id), if reading && parcels.full(id) => {}
                received = recv(channel.as_deref()), if reading && !parcels.full(id) => {
                    match received {
                        Ok(Some(received)) => {
                            let carried = !received.fds.is_empty();
                            for input in decode(id, received, &version, &parcels, &kinds) {
                                reading = matches!(input, Input::Message { .. } | Input::HandRefused { .. } | Input::StateCut { .. });
                                report(input);
                            }
                            // A child that hands connections over as fast as it can
                            // keeps its channel readable: without a turn here, the loop
                            // would not forward any until the runtime's budget ran out,
                            // a hundred messages later.
                            if carried {
                                tokio::task::yield_now().await;
                            }
                        }
                        Ok(None) => reading = false,
                        Err(e) => {
                            reading = false;
                            report(Input::ChannelFailed {
                                child: id,
                                reason: format!("it sent a malformed message: {e}"),
                            });
                        }
                    }
                }
                out = outgoing.recv(), if sending => match out {
                    Some(Outgoing::Handback(back)) => handback = Some(back),
                    Some(Outgoing::Message(msg, fds)) if channel.is_some() => {
                        if let SupervisorMsg::Welcome { listeners } = &msg {
                            kinds = listeners
                                .iter()
                                .map(|l| (l.name.clone(), l.network.kind()))
                                .collect();
                        }
                        queue.push_back((msg, fds));
                        if queue.len() > MAX_QUEUED && !deaf {
                            deaf = true;
                            report(Input::ChannelFailed {
                                child: id,
                                reason: format!(
                                    "it does not read its channel: {} messages wait for it",
                                    queue.len()
                                ),
                            });
                        }
                    }
                    Some(Outgoing::Message(..)) => {}
                    None => sending = false,
                },
                sent = written(&mut writing), if writing.is_some() => {
                    let welcome = writing.take().is_some_and(|w| w.welcome);
                    // A child that is gone cannot be told; its exit is what counts.
                    if let (Err(e), true) = (sent, welcome) {
                        report(Input::ChannelFailed {
                            child: id,
                            reason: format!("sending its listeners failed: {e}"),
                        });
                    }
                }
                () = sleep_until(stall_at), if stall_at.is_some() && !deaf => {
                    deaf = true;
                    report(Input::ChannelFailed {
                        child: id,
                        reason: format!(
                            "it does not read its channel: nothing was read for {}s",
                            SEND_STALL.as_secs()
                        ),
                    });
                }
            }
        };
        drop(writing);
        // What the child said just before it exited (its `Finished`) comes first.
        if let Some(channel) = channel.as_deref().filter(|_| reading) {
            'recv: while let Ok(Some(received)) = channel.try_recv() {
                for input in decode(id, received, &version, &parcels, &kinds) {
                    let more = matches!(
                        input,
                        Input::Message { .. } | Input::HandRefused { .. } | Input::StateCut { .. }
                    );
                    report(input);
                    if !more {
                        break 'recv;
                    }
                }
            }
        }
        report(Input::Exited { child: id, status });
    }
}

/// The most messages that wait to be sent to a child: one that lets more pile up does
/// not read its channel, and is reported (the machine kills it). A child that reads,
/// however busy, never comes near: it is told at most a few things per connection it
/// moves.
const MAX_QUEUED: usize = 65_536;

/// How long one message may wait to be written before its child counts as not reading
/// its channel.
const SEND_STALL: Duration = Duration::from_secs(5);

/// A message being written to a child, in its own future so that the task goes on
/// reading and watching for the exit meanwhile.
struct Writing {
    future: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>,
    since: Instant,
    /// It is the welcome: a failure to send it is the child's failure.
    welcome: bool,
}

/// The next message of `queue` to write, if there is one and a channel to write it on;
/// a message the child's protocol version lacks is dropped.
fn next_write(
    channel: Option<&Arc<AsyncChannel>>,
    queue: &mut VecDeque<(SupervisorMsg, Vec<OwnedFd>)>,
    version: &AtomicU16,
) -> Option<Writing> {
    let channel = channel?;
    while let Some((msg, fds)) = queue.pop_front() {
        let Some(mut bytes) = msg.encode_for(spoken(version)) else {
            continue;
        };
        let welcome = matches!(msg, SupervisorMsg::Welcome { .. });
        let channel = Arc::clone(channel);
        let future = Box::pin(async move {
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
            let sent = channel.send(&bytes, &borrowed).await;
            // It may hold a TLS session's keys.
            bytes.zeroize();
            sent
        });
        return Some(Writing {
            future,
            since: Instant::now(),
            welcome,
        });
    }
    None
}

/// Hands the channel and the pidfd back, for the supervisor's next image; they come
/// back (the watch of the exit too) if nobody waits for them any more: the upgrade has
/// given up, and the task goes on.
fn hand_back(
    back: oneshot::Sender<Parked>,
    channel: &mut Option<Arc<AsyncChannel>>,
    exited: Exited,
    pid: u32,
) -> Result<(), Exited> {
    if back.is_closed() {
        return Err(exited);
    }
    let Some(shared) = channel.take() else {
        return Err(exited);
    };
    let owned = match Arc::try_unwrap(shared) {
        Ok(owned) => owned,
        Err(shared) => {
            *channel = Some(shared);
            return Err(exited);
        }
    };
    let parked = Parked {
        channel: owned.into_inner(),
        pidfd: exited.into_pidfd(),
    };
    match back.send(parked) {
        Ok(()) => Ok(()),
        Err(parked) => {
            *channel = AsyncChannel::new(parked.channel).ok().map(Arc::new);
            Err(Exited::new(pid, parked.pidfd))
        }
    }
}

/// The end of the write under way, or never if there is none.
async fn written(writing: &mut Option<Writing>) -> std::io::Result<()> {
    match writing {
        Some(writing) => (&mut writing.future).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The version of the child's hello, if it has said hello.
pub(crate) fn spoken(version: &AtomicU16) -> Option<u16> {
    Some(version.load(Ordering::Relaxed)).filter(|v| *v != 0)
}

/// A message from the child; its first (the hello) fixes the conversation's version,
/// any this supervisor speaks. Only connections handed over come with fds, one each,
/// and those are held in `parcels` for the machine to forward or return (with the
/// session of a TLS one: the machine sees a TLS connection handed over as any other,
/// [`ChildMsg::Hand`], and never its keys). A parcel that is not a connection of one of
/// the child's listeners (`kinds`, once it is known), or carries more than
/// [`MAX_CARRIED`] bytes ([`MAX_TLS_CARRIED`] with a TLS session), is refused: its fd
/// is closed, and the machine gives it back to the child with the reason
/// ([`Input::HandRefused`]).
fn decode(
    child: ChildId,
    received: channel::Received,
    version: &AtomicU16,
    parcels: &Parcels,
    kinds: &HashMap<String, Kind>,
) -> Vec<Input> {
    let mut bytes = received.bytes;
    let decoded = decode_message(child, &bytes, version);
    // It may hold a TLS session's keys, which live on in a `Secret` only.
    bytes.zeroize();
    let (fds, cut) = (received.fds, received.cut);
    match decoded {
        Input::Message {
            msg: ChildMsg::Hand(handed),
            ..
        } => {
            let handed = handed.into_iter().map(|parcel| (parcel, None)).collect();
            hand(child, handed, fds, cut, parcels, kinds)
        }
        // Told apart: the parcels for the machine, the sessions for `parcels`.
        Input::Message {
            msg: ChildMsg::HandTls(handed),
            ..
        } => {
            let handed = (handed.into_iter())
                .map(|tls| (tls.parcel, Some(tls.session)))
                .collect();
            hand(child, handed, fds, cut, parcels, kinds)
        }
        // A state's head comes with its sealed file (none for an empty state), its
        // named fds one each; held until the machine relays or drops them. Cut short,
        // this process ran out of fds: not the child's fault.
        Input::Message {
            msg: msg @ (ChildMsg::StateGive(_) | ChildMsg::StateFds(_)),
            ..
        } => {
            let expected = match &msg {
                ChildMsg::StateGive(head) => usize::from(head.size > 0),
                ChildMsg::StateFds(names) => names.len(),
                _ => 0,
            };
            if fds.len() == expected {
                parcels.hold_state(child, fds);
                vec![Input::Message { child, msg }]
            } else if cut && fds.len() < expected {
                parcels.hold_state(child, fds);
                vec![Input::StateCut { child, msg }]
            } else {
                vec![Input::ChannelFailed {
                    child,
                    reason: format!(
                        "a message of its state came with {} fds for {expected}",
                        fds.len()
                    ),
                }]
            }
        }
        _ if !fds.is_empty() => vec![Input::ChannelFailed {
            child,
            reason: "it sent fds".to_string(),
        }],
        input => vec![input],
    }
}

/// The connections `child` handed over (with the session of each TLS one), each with
/// its fd: held, and given to the machine as [`ChildMsg::Hand`]; those refused, given
/// back with the reason.
fn hand(
    child: ChildId,
    handed: Vec<(Parcel, Option<Secret>)>,
    fds: Vec<OwnedFd>,
    cut: bool,
    parcels: &Parcels,
    kinds: &HashMap<String, Kind>,
) -> Vec<Input> {
    // Fewer fds than parcels only where the kernel cut the list short: this process
    // ran out of fds. Those without one go back; nobody is to blame.
    if !(handed.len() == fds.len() || cut && fds.len() < handed.len()) || !distinct(&handed) {
        return vec![Input::ChannelFailed {
            child,
            reason: format!(
                "it handed over {} connections with {} fds, or one id twice",
                handed.len(),
                fds.len()
            ),
        }];
    }
    let mut good = Vec::new();
    let mut refused: Vec<(u64, String)> = Vec::new();
    let mut fds = fds.into_iter();
    for (parcel, session) in handed {
        let Some(fd) = fds.next() else {
            let why = "the supervisor is out of fds (its fd limit)".to_string();
            refused.push((parcel.id, why));
            continue;
        };
        match refusal(&parcel, session.as_ref(), fd.as_fd(), kinds) {
            Some(why) => refused.push((parcel.id, why)),
            None => {
                parcels.hold(child, parcel.id, fd, session);
                good.push(parcel);
            }
        }
    }
    let mut inputs = Vec::new();
    if !good.is_empty() {
        let msg = ChildMsg::Hand(good);
        inputs.push(Input::Message { child, msg });
    }
    if let Some((_, reason)) = refused.first() {
        let reason = reason.clone();
        let ids = refused.into_iter().map(|(id, _)| id).collect();
        inputs.push(Input::HandRefused { child, ids, reason });
    }
    inputs
}

/// Why a parcel handed over is not taken as a connection of its listener, if it is not:
/// its fd must be a connected stream socket (not a listening one) of the listener's
/// kind, and what it carries must fit.
fn refusal(
    parcel: &Parcel,
    session: Option<&Secret>,
    fd: BorrowedFd<'_>,
    kinds: &HashMap<String, Kind>,
) -> Option<String> {
    if parcel.bytes.len() > MAX_CARRIED {
        return Some(format!(
            "a connection carries {} bytes read, more than {MAX_CARRIED}",
            parcel.bytes.len()
        ));
    }
    if let Some(session) = session {
        let carried = parcel.bytes.len() + session.len();
        if carried > MAX_TLS_CARRIED {
            return Some(format!(
                "a TLS connection carries {carried} bytes with its session, more than {MAX_TLS_CARRIED}"
            ));
        }
    }
    // Two calls for the common case, a connection (ten thousand of them at a move):
    // its type, and its peer, which gives the family; a listening socket, or one never
    // connected, has no peer. What it is instead is looked at only when refused.
    match sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => {}
        Ok(_) => return Some("a connection's fd is not a stream socket".to_string()),
        Err(_) => return Some("a connection's fd is not a socket".to_string()),
    }
    let family = match rustix::net::getpeername(fd) {
        Ok(Some(peer)) => peer.address_family(),
        // An unnamed peer (a unix socket pair): the family is the socket's own.
        Ok(None) => match crate::sys::socket_family(fd) {
            Ok(family) => family,
            Err(_) => return Some("a connection's fd is not a socket".to_string()),
        },
        // (Apple's systems do not say whether a socket listens.)
        #[cfg(not(target_vendor = "apple"))]
        Err(_) if sockopt::socket_acceptconn(fd).unwrap_or(false) => {
            return Some("a connection's fd is a listening socket".to_string());
        }
        Err(_) => return Some("a connection's fd is not connected".to_string()),
    };
    let fits = match kinds.get(&parcel.listener) {
        Some(Kind::Tcp) => family == AddressFamily::INET || family == AddressFamily::INET6,
        Some(Kind::Unix) => family == AddressFamily::UNIX,
        Some(_) => false,
        // Not welcomed by this image (a child taken over at an upgrade): any kind a
        // listener may be.
        None if kinds.is_empty() => [
            AddressFamily::INET,
            AddressFamily::INET6,
            AddressFamily::UNIX,
        ]
        .contains(&family),
        None => false,
    };
    (!fits).then(|| format!("a connection is not one of listener {:?}", parcel.listener))
}

/// Whether no two parcels have the same id (each is held by its id).
fn distinct(handed: &[(Parcel, Option<Secret>)]) -> bool {
    let ids: std::collections::BTreeSet<u64> = handed.iter().map(|(p, _)| p.id).collect();
    ids.len() == handed.len()
}

fn decode_message(child: ChildId, bytes: &[u8], version: &AtomicU16) -> Input {
    let accepted = match spoken(version) {
        Some(v) => Versions {
            oldest: v,
            newest: v,
        },
        None => Versions::ours(),
    };
    match protocol::decode::<ChildMsg>(bytes, accepted) {
        Ok((v, msg)) if msg.since() > v => Input::ChannelFailed {
            child,
            reason: format!(
                "it sent a message of protocol {} in protocol {v}",
                msg.since()
            ),
        },
        Ok((v, msg)) => {
            version.store(v, Ordering::Relaxed);
            Input::Message { child, msg }
        }
        Err(e) => Input::ChannelFailed {
            child,
            reason: format!("it sent a malformed message: {e}"),
        },
    }
}

/// The next message of a child's channel, or `None` at its end.
///
/// A child that exits with messages of ours unread (a `StateDone` or `Taken` that came
/// as it ended) resets its end: after what it sent, that is the end of its channel, as
/// a plain close is, and not a fault of the child's.
async fn recv(channel: Option<&AsyncChannel>) -> std::io::Result<Option<channel::Received>> {
    match channel {
        Some(channel) => match channel.recv().await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(None),
            received => received,
        },
        None => std::future::pending().await,
    }
}

/// Waits for a child's exit without reaping it (`waitid` with `WNOWAIT`): until it is
/// reaped, its pid, and so its process group's id, stays its own.
///
/// It looks again when the child's pidfd becomes readable (Linux), else on each
/// `SIGCHLD` (which any child's exit raises; other children's statuses are left alone,
/// as each task waits for its own pid only).
#[derive(Debug)]
struct Exited {
    pid: Option<Pid>,
    pidfd: Option<AsyncFd<OwnedFd>>,
    sigchld: Option<Signal>,
    /// Whether to ask the kernel before waiting for a change: at first, and after each
    /// change. Not on every call: the child's task calls [`wait`](Self::wait) anew for
    /// each message it reads, thousands when connections move.
    look: bool,
}

impl Exited {
    fn new(pid: u32, pidfd: Option<OwnedFd>) -> Exited {
        let pidfd = pidfd.and_then(|fd| {
            // SAFETY: an `OwnedFd` is open for as long as it lives and always returns
            // the same fd number, and the `AsyncFd` owns it until dropped.
            unsafe { AsyncFd::register(fd) }.ok()
        });
        // Listening before the first look: an exit between the two is not missed.
        let sigchld = match pidfd {
            Some(_) => None,
            None => signal(SignalKind::child()).ok(),
        };
        Exited {
            pid: Pid::from_raw(pid as i32),
            pidfd,
            sigchld,
            look: true,
        }
    }

    /// The pidfd back, for the supervisor's next image.
    fn into_pidfd(self) -> Option<OwnedFd> {
        self.pidfd.map(AsyncFd::into_inner)
    }

    /// Until something may have changed: the pidfd is readable, a `SIGCHLD` came, or
    /// (with neither) a while has passed.
    async fn changed(&mut self) {
        if let Some(pidfd) = &self.pidfd {
            // A pidfd is readable once the process has exited.
            match pidfd.readable().await {
                Ok(mut guard) => guard.clear_ready(),
                Err(_) => tokio::time::sleep(POLL_EXIT).await,
            }
        } else if let Some(sigchld) = &mut self.sigchld {
            if sigchld.recv().await.is_none() {
                tokio::time::sleep(POLL_EXIT).await;
            }
        } else {
            tokio::time::sleep(POLL_EXIT).await;
        }
    }

    async fn wait(&mut self) -> WaitStatus {
        let Some(pid) = self.pid else {
            return WaitStatus::Unknown;
        };
        loop {
            if self.look {
                // By pid: it is our child and not reaped, so the pid is still its own
                // (and this works on kernels whose waitid does not take a pidfd).
                let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
                match rustix::process::waitid(WaitId::Pid(pid), options) {
                    Ok(Some(status)) => return wait_status(&status),
                    Ok(None) | Err(rustix::io::Errno::INTR) => {}
                    // Not our child (it cannot be): nothing is left to wait for.
                    Err(_) => return WaitStatus::Unknown,
                }
                self.look = false;
            }
            self.changed().await;
            // In the same poll as the change was taken: dropped before this line, the
            // future took nothing.
            self.look = true;
        }
    }
}

fn wait_status(status: &WaitIdStatus) -> WaitStatus {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => WaitStatus::Code(code),
        (None, Some(signal)) => WaitStatus::Signal(signal),
        (None, None) => WaitStatus::Unknown,
    }
}

/// Reaps an exited child (it is a zombie, so this does not block).
pub(crate) fn reap(pid: u32) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::control::protocol::TlsParcel;
    use zeroize::Zeroizing;

    /// A TLS connection handed over is held with its session, and the machine is given
    /// the parcel alone; one that carries more than a TLS parcel may is refused.
    #[test]
    fn a_tls_connection_is_held_with_its_session_and_the_machine_sees_the_parcel() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = || {
            let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            OwnedFd::from(stream)
        };
        let handed = |id, session: usize| TlsParcel {
            parcel: Parcel {
                id,
                listener: "https".into(),
                bytes: b"GET".to_vec(),
            },
            session: Secret::new(Zeroizing::new(vec![7; session])),
        };
        let msg = ChildMsg::HandTls(vec![handed(1, 300), handed(2, MAX_TLS_CARRIED)]);
        let received = channel::Received {
            bytes: protocol::encode_at(7, &msg),
            fds: vec![socket(), socket()],
            cut: false,
        };
        let (child, version) = (ChildId(4), AtomicU16::new(7));
        let parcels = Parcels::default();
        let kinds = HashMap::from([("https".to_string(), Kind::Tcp)]);
        let inputs = decode(child, received, &version, &parcels, &kinds);
        let [
            Input::Message {
                msg: ChildMsg::Hand(good),
                ..
            },
            Input::HandRefused { ids, reason, .. },
        ] = inputs.as_slice()
        else {
            panic!("{inputs:?}");
        };
        assert_eq!(good.iter().map(|p| p.id).collect::<Vec<_>>(), [1]);
        assert_eq!(ids, &[2]);
        assert!(
            reason.starts_with("a TLS connection carries 40963 bytes"),
            "{reason}"
        );
        let (_, session) = parcels.take(child, 1).expect("held");
        assert_eq!(session.map(|s| s.len()), Some(300));
        assert!(parcels.take(child, 2).is_none(), "closed");
    }

    /// Seeing a child's exit does not reap it, whether it is seen on a pidfd or on
    /// `SIGCHLD` (as without pidfds): until [`reap`], its pid (and the id of
    /// the process group it leads) cannot be taken by another process, so the group
    /// can be killed safely after the exit.
    #[tokio::test]
    async fn an_exit_is_seen_without_reaping_the_child() {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("sh runs");
        let pid = child.id();
        drop(child);
        let pidfd = Pid::from_raw(pid as i32).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        for pidfd in [pidfd, None] {
            let status = Exited::new(pid, pidfd).wait().await;
            assert_eq!(status, WaitStatus::Code(3));
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("still there");
            assert!(stat.contains(") Z "), "a zombie until reaped: {stat}");
        }
        reap(pid);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    /// Without a pidfd, an exit that comes while the task waits is seen on `SIGCHLD`.
    #[tokio::test]
    async fn a_later_exit_is_seen_on_sigchld() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "read line; exit 4"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("a pipe");
        // Reaped below, by `reap`, as the supervisor does.
        drop(child);
        let mut exited = Exited::new(pid, None);
        assert!(exited.sigchld.is_some());
        let waited = tokio::spawn(async move { exited.wait().await });
        // (A test runtime has one thread: this lets the task look once and wait.)
        tokio::task::yield_now().await;
        assert!(!waited.is_finished(), "the child has not exited yet");
        drop(std::io::Write::write_all(&mut stdin, b"go\n"));
        let status = tokio::time::timeout(Duration::from_secs(20), waited)
            .await
            .expect("seen within the deadline")
            .expect("the task ran");
        assert_eq!(status, WaitStatus::Code(4));
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("still there");
        assert!(stat.contains(") Z "), "a zombie until reaped: {stat}");
        reap(pid);
    }
}
