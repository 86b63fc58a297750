//! The child's side of the channel: hello, the listeners, ready, lameduck; what moves
//! between processes (connections, state) has a module of its own, which the thread
//! that reads the supervisor's messages hands its messages to.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rustix::fs::FileType;
use rustix::io::FdFlags;
use rustix::net::{AddressFamily, RecvFlags, SocketType, sockopt};
use tokio::sync::watch;
use zeroize::Zeroize;

use crate::channel;
use crate::config::Config;
use crate::context::{self, Slot, SlotState, Standing, Tell};
use crate::control::protocol::{
    self, Carried, ChildHello, ChildMsg, Probation, SupervisorMsg, Versions,
};
use crate::environ::{self, CHANNEL_ENV, SUPERVISOR_PID_ENV, VERSIONS_ENV};
use crate::handoff::{Moves, Post};
use crate::output::errln;
use crate::state_transfer::StateTransfer;
use crate::sys;
use crate::wind_down;

/// How long the child waits for the supervisor's answer to its hello.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a call of [`take_channel`] has taken the channel fd: it is this process's to
/// own once.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The channel fd that a supervisor left for this process, if any.
///
/// `None` when `LITTLEBOSS_CHANNEL_FD` is unset, or when `LITTLEBOSS_SUPERVISOR_PID`
/// names a process other than our parent and the fd is not a channel from it: the
/// variables were inherited from a supervised process by a program it started (the
/// channel itself is close-on-exec there), and this process runs unsupervised. When
/// the fd is that supervisor's channel, though our parent is no longer it, the
/// supervisor died after starting this process: an error ([`ChannelError::Orphaned`]),
/// never the unsupervised path, which would bind the listeners itself and keep the
/// port from the next supervisor.
/// Otherwise the fd must be a unix `SOCK_SEQPACKET` or `SOCK_STREAM` socket whose peer
/// is our parent, or the answer is an error: a number that means something else
/// (stdout, a pipe, a file) is never used as a channel. The variables are read from the environment as it was at
/// start and left as they are. The fd is made close-on-exec.
pub(crate) fn take_channel() -> Option<Result<OwnedFd, ChannelError>> {
    let value = environ::var(CHANNEL_ENV)?;
    let parent = rustix::process::Pid::as_raw(rustix::process::getppid());
    if let Some(named) = environ::var(SUPERVISOR_PID_ENV) {
        match named.to_str().and_then(|v| v.parse::<i32>().ok()) {
            Some(pid) if pid == parent => {}
            Some(pid) if is_channel_from(value, pid) => {
                return Some(Err(ChannelError::Orphaned { supervisor: pid }));
            }
            Some(_) => return None,
            None => {
                let value = named.to_os_string();
                return Some(Err(ChannelError::NotPid { value }));
            }
        }
    }
    let Some(raw) = value
        .to_str()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|&raw| raw >= 0)
    else {
        let value = value.to_os_string();
        return Some(Err(ChannelError::NotFd { value }));
    };
    let not_channel = |why| ChannelError::NotChannel { raw, why };
    if !sys::is_open(raw) {
        return Some(Err(not_channel(NotChannel::Closed)));
    }
    // SAFETY: the number is open (checked just above), not -1, and the borrow lives only
    // for the checks below, which only describe the fd (fstat, getsockopt): nothing is
    // read from or written to it. Had another thread of the program closed that number
    // meanwhile, they would fail with EBADF or describe whatever took the number, and
    // then refuse it or take it for ours only if it is a channel from our parent.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    if let Err(why) = check_channel(borrowed, parent) {
        return Some(Err(not_channel(why)));
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Some(Err(ChannelError::Taken { raw }));
    }
    // SAFETY: the fd is open and is a unix channel socket connected to our parent
    // (checked above): the channel the supervisor created and left at this number for
    // this process. The variable is its only record, and `TAKEN` lets only one call in
    // the process own it, so nothing else in the process owns or closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // The program's own children must not inherit it.
    if let Err(e) = rustix::io::fcntl_setfd(&fd, FdFlags::CLOEXEC) {
        return Some(Err(ChannelError::Cloexec(e.into())));
    }
    // From here the kernel sends SIGTERM when the supervisor dies, even if the channel's
    // end of file never came (a copy of the supervisor's end left open somewhere). Had
    // it died before, our parent is another process already: look once more. Where the
    // call fails or does not exist, the channel's end of file is the sign.
    let _ = sys::term_when_parent_dies();
    let now = rustix::process::Pid::as_raw(rustix::process::getppid());
    if now != parent {
        return Some(Err(ChannelError::Orphaned { supervisor: parent }));
    }
    Some(Ok(fd))
}

/// Whether the fd number `value` names is open and a channel whose peer is `pid`.
fn is_channel_from(value: &std::ffi::OsStr, pid: i32) -> bool {
    let Some(raw) = value.to_str().and_then(|v| v.parse::<i32>().ok()) else {
        return false;
    };
    if raw < 0 || !sys::is_open(raw) {
        return false;
    }
    // SAFETY: the number is open (checked just above) and not -1, and the borrow lives
    // only for `check_channel`, which only describes the fd (fstat, getsockopt).
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    check_channel(borrowed, pid).is_ok()
}

/// The end of the message about a channel variable that is not what it should be.
const ASK: &str = "was this started by a littleboss supervisor?";

/// Whether `fd` is a channel from our parent, `parent`: a unix-domain `SOCK_SEQPACKET`
/// or `SOCK_STREAM` socket (whichever the supervisor's system uses) whose peer is that
/// process. Else what it is instead.
fn check_channel(fd: BorrowedFd<'_>, parent: i32) -> Result<(), NotChannel> {
    let stat = rustix::fs::fstat(fd).map_err(|e| NotChannel::Unseen(e.into()))?;
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::Socket => None,
        FileType::Fifo => Some("a pipe"),
        FileType::RegularFile => Some("a file"),
        FileType::Directory => Some("a directory"),
        FileType::CharacterDevice => Some("a terminal or device"),
        FileType::BlockDevice => Some("a block device"),
        FileType::Symlink | FileType::Unknown => Some("something else"),
    };
    if let Some(kind) = kind {
        return Err(NotChannel::NotSocket(kind));
    }
    let domain = sys::socket_family(fd).map_err(NotChannel::Socket)?;
    if domain != AddressFamily::UNIX {
        return Err(NotChannel::NotUnix);
    }
    let kind = sockopt::socket_type(fd).map_err(|e| NotChannel::Socket(e.into()))?;
    if channel::Framing::from_type(kind).is_none() {
        let shown = match kind {
            SocketType::DGRAM => "a datagram socket",
            _ => "a socket of another type",
        };
        return Err(NotChannel::WrongType(shown));
    }
    match sys::peer_pid(fd).map_err(NotChannel::Peer)? {
        0 => Err(NotChannel::PeerUnknown),
        pid if pid != parent => Err(NotChannel::NotParent { pid, parent }),
        _ => Ok(()),
    }
}

/// Why the channel a supervisor should have left cannot be taken: its variables name
/// no fd, or an fd that is not a channel from our parent. Each text ends by asking
/// whether a supervisor started this process, where that is the likely answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChannelError {
    /// The supervisor's pid, as the variable gives it, is not a number.
    #[error("{SUPERVISOR_PID_ENV}={value:?} is not a pid; {ASK}")]
    NotPid { value: OsString },
    /// The channel's fd, as the variable gives it, is not a number.
    #[error("{CHANNEL_ENV}={value:?} is not an fd number; {ASK}")]
    NotFd { value: OsString },
    /// Fd `raw` is not a channel.
    #[error("{CHANNEL_ENV}={raw} is not a littleboss channel ({why}); {ASK}")]
    NotChannel {
        raw: i32,
        #[source]
        why: NotChannel,
    },
    /// The supervisor that started this process is gone (its channel is here, but
    /// our parent is another process now): this process serves nothing.
    #[error(
        "the supervisor that started this process (pid {supervisor}) is gone; exiting, binding nothing"
    )]
    Orphaned { supervisor: i32 },
    /// An earlier run in this process owns the channel.
    #[error("{CHANNEL_ENV}={raw} was taken already by an earlier run in this process")]
    Taken { raw: i32 },
    /// The channel could not be made close-on-exec.
    #[error("{CHANNEL_ENV}: {0}")]
    Cloexec(#[source] io::Error),
}

/// What an fd is instead of a channel from our parent ([`check_channel`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotChannel {
    #[error("not an open fd")]
    Closed,
    #[error("cannot look at it: {0}")]
    Unseen(#[source] io::Error),
    /// What it is: `a pipe`, `a file`, ...
    #[error("{0}, not a socket")]
    NotSocket(&'static str),
    #[error("socket: {0}")]
    Socket(#[source] io::Error),
    #[error("not a unix-domain socket")]
    NotUnix,
    /// What it is: `a datagram socket`, ...
    #[error("{0}, not a seqpacket or stream socket")]
    WrongType(&'static str),
    #[error("its peer: {0}")]
    Peer(#[source] io::Error),
    #[error("its peer is not known: not connected, or outside this pid namespace")]
    PeerUnknown,
    #[error("its peer is pid {pid}, not the parent process, pid {parent}")]
    NotParent { pid: i32, parent: i32 },
}

/// What the child has once the supervisor welcomed it.
pub(crate) struct Joined {
    pub slots: Vec<Slot>,
    pub lameduck: watch::Receiver<bool>,
    pub standing: watch::Receiver<Standing>,
    pub link: Arc<Link>,
    pub moves: Arc<Moves>,
    pub state: Arc<StateTransfer>,
}

/// The child's end of the channel, shared by `ready()`, the final message and the
/// thread that reads the supervisor's messages.
///
/// Nothing the program calls blocks on the channel: messages go to a queue that one
/// writer thread sends, in order, blocking while the supervisor does not read. Only the
/// final message waits for that thread, and for at most [`FINISH_TIMEOUT`].
#[derive(Debug)]
pub(crate) struct Link {
    fd: Arc<OwnedFd>,
    outbox: mpsc::Sender<Outgoing>,
    /// The protocol version of this conversation.
    version: u16,
}

/// A message for the writer thread, its fds, and whom to tell whether it was sent.
#[derive(Debug)]
struct Outgoing {
    msg: ChildMsg,
    fds: Vec<OwnedFd>,
    sent: Option<mpsc::SyncSender<bool>>,
}

/// How long the end of main waits for its `Finished` message to be sent.
const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

impl Link {
    /// Wraps the channel and starts its writer thread.
    fn start(fd: OwnedFd, version: u16) -> io::Result<Link> {
        let fd = Arc::new(fd);
        let (outbox, queue) = mpsc::channel();
        let writer = Arc::clone(&fd);
        std::thread::Builder::new()
            .name("littleboss-send".into())
            .spawn(move || send_queued(&writer, version, &queue))?;
        Ok(Link {
            fd,
            outbox,
            version,
        })
    }

    /// Queues `msg` with `fds`; returns at once. A long list of answers goes in as
    /// many messages as it takes.
    /// `false` if the conversation's version has no such message (it is not sent).
    fn post(&self, msg: ChildMsg, fds: Vec<OwnedFd>, sent: Option<mpsc::SyncSender<bool>>) -> bool {
        // The one place where the child's messages are gated by version: a supervisor
        // of an earlier protocol is not sent what it would not understand.
        if msg.since() > self.version {
            if let Some(sent) = sent {
                let _ = sent.send(false);
            }
            return false;
        }
        // If the writer is gone, so is the channel: nobody is left to tell.
        if !fds.is_empty() || sent.is_some() {
            let _ = self.outbox.send(Outgoing { msg, fds, sent });
            return true;
        }
        for msg in msg.in_batches(channel::BATCH_BYTES) {
            let (fds, sent) = (Vec::new(), None);
            let _ = self.outbox.send(Outgoing { msg, fds, sent });
        }
        true
    }

    /// Reports how the program's main ended, waiting up to [`FINISH_TIMEOUT`] for the
    /// message to be sent.
    pub(crate) fn finished(&self, result: &Result<(), String>) {
        self.finished_within(result, FINISH_TIMEOUT);
    }

    /// [`finished`](Self::finished), waiting up to `timeout`; whether it was sent.
    fn finished_within(&self, result: &Result<(), String>, timeout: Duration) -> bool {
        let (sent, done) = mpsc::sync_channel(1);
        let _ = self.post(ChildMsg::Finished(result.clone()), Vec::new(), Some(sent));
        done.recv_timeout(timeout).unwrap_or(false)
    }
}

/// The writer thread: sends each queued message in turn, until the `Link` is dropped.
/// Connections handed over one after another go in one message, as many as fit, and so
/// do answers for connections handed in (10,000 connections move in a few hundred
/// messages, not in 40,000).
fn send_queued(fd: &OwnedFd, version: u16, queue: &mpsc::Receiver<Outgoing>) {
    let mut next = None;
    while let Some(mut out) = next.take().or_else(|| queue.recv().ok()) {
        if out.sent.is_none() {
            // A batch waits up to `BATCH_WAIT` for more of its kind: the tasks that hand
            // connections over post one each, a few microseconds apart, and this thread,
            // woken by the first, would otherwise send them one message each.
            let until = batches(&out.msg).then(|| Instant::now() + BATCH_WAIT);
            while let Some(more) = queued(queue, until) {
                if let Some(more) = absorb(&mut out, more) {
                    next = Some(more);
                    break;
                }
            }
        }
        let borrowed: Vec<BorrowedFd<'_>> = out.fds.iter().map(|fd| fd.as_fd()).collect();
        // If the supervisor is gone there is nobody to tell; the reader thread has seen
        // the channel close and set lameduck already.
        let mut bytes = protocol::encode_at(version, &out.msg);
        let result = channel::send(fd.as_fd(), &bytes, &borrowed);
        // It may hold a TLS session's keys.
        bytes.zeroize();
        if let Some(sent) = out.sent {
            let _ = sent.send(result.is_ok());
        }
    }
}

/// The next message queued, waiting for one until `until` if there is none yet.
fn queued(queue: &mpsc::Receiver<Outgoing>, until: Option<Instant>) -> Option<Outgoing> {
    match queue.try_recv() {
        Ok(more) => Some(more),
        Err(mpsc::TryRecvError::Disconnected) => None,
        Err(mpsc::TryRecvError::Empty) => {
            let left = until?.checked_duration_since(Instant::now())?;
            queue.recv_timeout(left).ok()
        }
    }
}

/// How long a message that goes in batches waits for more to join it.
const BATCH_WAIT: Duration = Duration::from_micros(200);

/// Whether `msg` is of a kind that goes in batches ([`absorb`]).
fn batches(msg: &ChildMsg) -> bool {
    matches!(
        msg,
        ChildMsg::Hand(_) | ChildMsg::HandTls(_) | ChildMsg::Adopted(_) | ChildMsg::Declined(_)
    )
}

/// About how many bytes `parcels` take in a message.
fn carried<P: Carried>(parcels: &[P]) -> usize {
    parcels.iter().map(P::carried).sum()
}

/// `parcels` and `extra`, with their fds, fit in one message.
fn fit<P: Carried>(parcels: &[P], extra: &[P], fds: usize) -> bool {
    fds <= channel::MAX_FDS && carried(parcels) + carried(extra) <= channel::BATCH_BYTES
}

/// Adds `more` to `out` if both are of a kind that goes in batches (hand-overs, or
/// answers for connections handed in, of one kind) and the sum fits in one message;
/// `more` back otherwise, to be sent after `out`.
fn absorb(out: &mut Outgoing, more: Outgoing) -> Option<Outgoing> {
    if more.sent.is_some() {
        return Some(more);
    }
    match (&mut out.msg, more.msg) {
        (ChildMsg::Hand(parcels), ChildMsg::Hand(extra))
            if fit(parcels, &extra, out.fds.len() + more.fds.len()) =>
        {
            parcels.extend(extra);
            out.fds.extend(more.fds);
            None
        }
        (ChildMsg::HandTls(parcels), ChildMsg::HandTls(extra))
            if fit(parcels, &extra, out.fds.len() + more.fds.len()) =>
        {
            parcels.extend(extra);
            out.fds.extend(more.fds);
            None
        }
        (ChildMsg::Adopted(ids), ChildMsg::Adopted(extra))
        | (ChildMsg::Declined(ids), ChildMsg::Declined(extra))
            if (ids.len() + extra.len()) * protocol::ID_BYTES <= channel::BATCH_BYTES =>
        {
            ids.extend(extra);
            None
        }
        (_, msg) => Some(Outgoing { msg, ..more }),
    }
}

impl Tell for Arc<Link> {
    fn tell(&self, msg: ChildMsg) -> bool {
        Link::post(self, msg, Vec::new(), None)
    }
}

impl Post for Arc<Link> {
    fn post(&self, msg: ChildMsg, fds: Vec<OwnedFd>) {
        let _ = Link::post(self, msg, fds, None);
    }
}

/// Says hello, receives the listeners, and starts the thread that watches for lameduck.
pub(crate) fn join(config: &Config, fd: OwnedFd) -> io::Result<Joined> {
    let version = channel_version()?;
    // SIGTERM winds the program down, whoever sends it: the kernel when the supervisor
    // dies, a service manager at stop. In place before the hello, so that the
    // supervisor never knows a child that a SIGTERM would kill outright.
    let (tx, rx) = watch::channel(false);
    wind_down::on_signals(
        &wind_down::SUPERVISED,
        wind_down::Again::Nothing,
        tx.clone(),
    )
    .map_err(|e| io::Error::new(e.kind(), format!("installing the SIGTERM handler: {e}")))?;
    let hello = ChildHello {
        name: config.name.clone(),
        pid: std::process::id(),
        calls_ready: config.calls_ready,
        settle_ms: millis(config.settle),
        ready_timeout_ms: millis(config.ready_timeout),
        lameduck_ms: millis(config.lameduck),
    };
    let hello = if version >= PROBATION_SINCE {
        let probation = Probation {
            ms: millis(config.probation),
            five_xx_pct: config.probation_5xx.unwrap_or(0),
            standby: config.standby,
        };
        ChildMsg::HelloProbation(hello, probation)
    } else {
        ChildMsg::Hello(hello)
    };
    channel::send(fd.as_fd(), &protocol::encode_at(version, &hello), &[])?;
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(WELCOME_TIMEOUT),
    )?;
    let received = channel::recv(fd.as_fd(), RecvFlags::empty())
        .map_err(|e| io::Error::new(e.kind(), format!("waiting for the supervisor: {e}")))?
        .ok_or_else(|| io::Error::other("the supervisor closed the channel before answering"))?;
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, None)?;
    let (_, msg): (u16, SupervisorMsg) = protocol::decode(&received.bytes, only(version))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("supervisor: {e}")))?;
    let listeners = match msg {
        SupervisorMsg::Welcome { listeners } => listeners,
        SupervisorMsg::Refused { reason } => {
            return Err(io::Error::other(format!(
                "the supervisor refused this binary: {reason}"
            )));
        }
        other => {
            return Err(io::Error::other(format!(
                "the supervisor sent {other:?} before the listeners"
            )));
        }
    };
    let expected = listeners.iter().filter(|l| l.addr.is_some()).count();
    if received.cut {
        return Err(io::Error::other(format!(
            "only {} of the fds of its {expected} listeners could be received: this process is out of fds (its fd limit)",
            received.fds.len()
        )));
    }
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
            state: match info.addr {
                Some(_) => fds.next().map_or(SlotState::Off, SlotState::Open),
                // The supervisor keeps the metrics' listener.
                None if config.metrics.as_ref() == Some(&info.name) => SlotState::Supervisor,
                None => SlotState::Off,
            },
            name: info.name,
            network: info.network,
        })
        .collect();
    let link = Arc::new(Link::start(fd, version)?);
    let moves = Arc::new(Moves::new(Box::new(Arc::clone(&link)), version, rx.clone()));
    let reader = Arc::clone(&link);
    let (standing_tx, standing) = watch::channel(Standing::default());
    let state = Arc::new(StateTransfer::new(
        (version >= STATE_SINCE).then(|| Box::new(Arc::clone(&link)) as Box<dyn Post>),
        context::winding_down(&rx, &standing),
    ));
    std::thread::Builder::new()
        .name("littleboss-channel".into())
        .spawn({
            let lameduck_time = config.lameduck;
            let moves = Arc::clone(&moves);
            let state = Arc::clone(&state);
            let told = Told {
                lameduck: tx,
                standing: standing_tx,
            };
            move || watch_supervisor(&reader, &moves, &state, &told, lameduck_time)
        })?;
    Ok(Joined {
        slots,
        lameduck: rx,
        standing,
        link,
        moves,
        state,
    })
}

/// The protocol version whose hello declares a probation.
const PROBATION_SINCE: u16 = 4;

/// The protocol version that moves program state between processes.
const STATE_SINCE: u16 = 6;

/// Where the supervisor's word goes: lameduck, and the process's part in a probation.
struct Told {
    lameduck: watch::Sender<bool>,
    standing: watch::Sender<Standing>,
}

/// Sets lameduck when the supervisor asks for it or goes away, and standby and
/// probation as it says them; gives what is about connections moving to `moves`, and
/// what is about state transfer to `state`.
///
/// When the supervisor is gone, nobody is left to kill a program that does not wind
/// down: after its lameduck time the child kills its own process group, as the
/// supervisor would have, so that no orphan keeps the listeners forever.
fn watch_supervisor(
    link: &Link,
    moves: &Moves,
    state: &StateTransfer,
    told: &Told,
    lameduck_time: Duration,
) {
    let lameduck = &told.lameduck;
    loop {
        match channel::recv(link.fd.as_ref().as_fd(), RecvFlags::empty()) {
            Ok(Some(mut msg)) => {
                let decoded = protocol::decode::<SupervisorMsg>(&msg.bytes, only(link.version));
                // It may hold a TLS session's keys, which live on in a `Secret` only.
                msg.bytes.zeroize();
                match decoded {
                    Ok((_, SupervisorMsg::Lameduck)) => {
                        lameduck.send_replace(true);
                    }
                    Ok((_, SupervisorMsg::Standby)) => {
                        told.standing.send_modify(|s| s.standby = true);
                    }
                    Ok((_, SupervisorMsg::Resume)) => {
                        // It serves again: the successor it was handing over to is not.
                        moves.forget_successor();
                        told.standing.send_modify(|s| s.standby = false);
                    }
                    Ok((_, SupervisorMsg::OnProbation { ms })) => {
                        let until = Instant::now().checked_add(Duration::from_millis(ms));
                        told.standing.send_modify(|s| s.probation_until = until);
                    }
                    Ok((version, other))
                        if other.since() <= version && StateTransfer::handles(&other) =>
                    {
                        // `cut`: the kernel dropped some of its fds, this process being
                        // out of fds; the state then fails, naming the fd limit.
                        state.on_message(other, msg.fds, msg.cut);
                    }
                    Ok((version, other)) if other.since() <= version && Moves::handles(&other) => {
                        moves.on_message(&other, msg.fds);
                    }
                    Ok(_) | Err(_) => {
                        errln!("littleboss: unexpected message from the supervisor; winding down");
                        lameduck.send_replace(true);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(None) | Err(_) => {
                moves.gone();
                state.gone();
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

/// The version to speak with the supervisor: the highest that both speak, the
/// supervisor's range being in [`VERSIONS_ENV`] (absent: protocol 1 only).
fn channel_version() -> io::Result<u16> {
    let theirs = match environ::var(VERSIONS_ENV) {
        None => Versions::V1,
        Some(value) => value.to_str().and_then(Versions::parse).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{VERSIONS_ENV}={value:?} is not a range of protocol versions"),
            )
        })?,
    };
    let ours = Versions::ours();
    ours.common(theirs).ok_or_else(|| {
        io::Error::other(format!(
            "the supervisor speaks littleboss protocol {theirs}, this binary speaks {ours}; \
             reload to a binary of a release that speaks both"
        ))
    })
}

/// The one version a conversation uses, as a range.
fn only(version: u16) -> Versions {
    Versions {
        oldest: version,
        newest: version,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rustix::net::{SendFlags, SocketFlags};

    use super::*;

    /// [`check_channel`], its refusal as text.
    fn check(fd: BorrowedFd<'_>, parent: i32) -> Result<(), String> {
        check_channel(fd, parent).map_err(|e| e.to_string())
    }

    fn us() -> i32 {
        rustix::process::Pid::as_raw(Some(rustix::process::getpid()))
    }

    #[test]
    fn a_channel_is_a_seqpacket_or_stream_socket_from_the_parent() {
        for kind in [channel::Framing::Packet, channel::Framing::Stream] {
            let (ours, _theirs) = channel::pair_of(kind).unwrap();
            // A socket pair we made has us as its peer: ours if we are the "parent".
            assert_eq!(check(ours.as_fd(), us()), Ok(()));
            let other = check(ours.as_fd(), us() + 1).unwrap_err();
            assert!(other.contains(&format!("its peer is pid {}, not the parent", us())));
        }
    }

    #[test]
    fn a_refused_channel_names_its_variable() {
        let cases = [
            (
                ChannelError::NotPid {
                    value: OsString::from("me"),
                },
                "LITTLEBOSS_SUPERVISOR_PID=\"me\" is not a pid; was this started by a littleboss supervisor?",
            ),
            (
                ChannelError::NotChannel {
                    raw: 1,
                    why: NotChannel::NotSocket("a terminal or device"),
                },
                "LITTLEBOSS_CHANNEL_FD=1 is not a littleboss channel (a terminal or device, not a socket); was this started by a littleboss supervisor?",
            ),
            (
                ChannelError::Taken { raw: 3 },
                "LITTLEBOSS_CHANNEL_FD=3 was taken already by an earlier run in this process",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn what_is_not_a_channel_says_what_it_is() {
        let (read, _write) = rustix::pipe::pipe().unwrap();
        assert_eq!(
            check(read.as_fd(), us()).unwrap_err(),
            "a pipe, not a socket"
        );
        let file = tempfile::tempfile().unwrap();
        assert_eq!(
            check(file.as_fd(), us()).unwrap_err(),
            "a file, not a socket"
        );
        let (datagram, _peer) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        assert_eq!(
            check(datagram.as_fd(), us()).unwrap_err(),
            "a datagram socket, not a seqpacket or stream socket"
        );
        let unconnected = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        assert!(
            check(unconnected.as_fd(), us())
                .unwrap_err()
                .contains("its peer is not known")
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            check(udp.as_fd(), us()).unwrap_err(),
            "not a unix-domain socket"
        );
    }

    /// Fills the channel from `child` towards the supervisor, who does not read;
    /// returns how many 1 KiB messages it took.
    fn fill(child: &OwnedFd) -> usize {
        let filler = [7u8; 1024];
        let mut sent = 0;
        loop {
            match rustix::net::send(child, &filler, SendFlags::DONTWAIT) {
                Ok(_) => sent += 1,
                Err(rustix::io::Errno::AGAIN) => return sent,
                Err(e) => panic!("filling the channel: {e}"),
            }
        }
    }

    #[test]
    fn ready_returns_at_once_when_the_supervisor_does_not_read() {
        let (supervisor, child) = channel::pair_of(channel::Framing::Packet).unwrap();
        let queued = fill(&child);
        let link = Arc::new(Link::start(child, protocol::PROTOCOL).unwrap());
        let (returned, took) = mpsc::channel();
        let caller = Arc::clone(&link);
        std::thread::spawn(move || {
            let start = Instant::now();
            caller.tell(ChildMsg::Ready);
            let _ = returned.send(start.elapsed());
        });
        let took = took
            .recv_timeout(Duration::from_secs(10))
            .expect("ready() returned");
        assert!(took < Duration::from_secs(1), "ready() took {took:?}");
        // Once the supervisor reads, the message arrives, after what was queued before.
        rustix::net::sockopt::set_socket_timeout(
            &supervisor,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(10)),
        )
        .unwrap();
        for _ in 0..queued {
            let filler = channel::recv(supervisor.as_fd(), RecvFlags::empty())
                .unwrap()
                .unwrap();
            assert_eq!(filler.bytes, [7u8; 1024]);
        }
        let msg = channel::recv(supervisor.as_fd(), RecvFlags::empty())
            .unwrap()
            .unwrap();
        assert_eq!(
            protocol::decode::<ChildMsg>(&msg.bytes, Versions::ours())
                .unwrap()
                .1,
            ChildMsg::Ready
        );
    }

    #[test]
    fn the_final_message_waits_a_bounded_time() {
        let (supervisor, child) = channel::pair_of(channel::Framing::Packet).unwrap();
        fill(&child);
        let link = Link::start(child, protocol::PROTOCOL).unwrap();
        let start = Instant::now();
        assert!(!link.finished_within(&Ok(()), Duration::from_millis(200)));
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "finished took {took:?}");
        drop(supervisor);
        // And it is sent at once when the supervisor reads.
        let (supervisor, child) = channel::pair_of(channel::Framing::Packet).unwrap();
        let link = Link::start(child, protocol::PROTOCOL).unwrap();
        assert!(link.finished_within(&Err("boom".into()), Duration::from_secs(10)));
        let msg = channel::recv(supervisor.as_fd(), RecvFlags::empty())
            .unwrap()
            .unwrap();
        assert_eq!(
            protocol::decode::<ChildMsg>(&msg.bytes, Versions::ours())
                .unwrap()
                .1,
            ChildMsg::Finished(Err("boom".into()))
        );
    }
}
