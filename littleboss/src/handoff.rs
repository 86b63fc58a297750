//! Connections that move from one process to the next at a reload: the child's side.
//!
//! A child in lameduck whose successor adopts a listener hands that listener's idle
//! connections over ([`Context::hand_over`](crate::Context::hand_over)): each goes to the
//! supervisor as an fd with the bytes read from it and not parsed yet, and the child
//! keeps its own copy until the supervisor says the successor took it (`Taken`: the copy
//! is closed) or not (`Returned`: the child serves it to the end). The successor takes
//! them from [`Adoptions`], which it opened with
//! [`Context::adopt`](crate::Context::adopt); each one taken is acknowledged at once, and
//! one the supervisor recalls before it was taken is declined and closed. So at every
//! moment exactly one process serves a connection, and a request that arrives while it
//! is on its way waits in the kernel's buffer.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, oneshot, watch};

use crate::control::protocol::{
    ChildMsg, MAX_CARRIED, MAX_TLS_CARRIED, MOVES_SINCE, Parcel, SupervisorMsg, TLS_MOVES_SINCE,
    TLS_SESSION_LAYOUT, TlsParcel,
};
use crate::secret::Secret;

/// An idle connection on its way between two processes: the socket, and what was read
/// from it and not parsed yet, which comes before what the socket gives next.
///
/// ```no_run
/// # async fn f(lb: littleboss::Context, stream: std::net::TcpStream) {
/// // In lameduck, between two requests: give it to the new process.
/// let moving = littleboss::Handoff { stream, buffered: Vec::new() };
/// if let Err(kept) = lb.hand_over("http", moving).await {
///     // Not moved: serve `kept.stream` (after `kept.buffered`) to the end here.
/// #   drop(kept);
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Handoff {
    /// The connection.
    pub stream: std::net::TcpStream,
    /// Bytes already read from it that belong before what it gives next (the start of a
    /// request, say); at most 16 KiB move with a connection.
    pub buffered: Vec<u8>,
}

/// A connection handed in or on its way out, as the HTTP helpers move it: its fd (a TCP
/// or a unix stream socket), what was read from it and not parsed yet (plaintext), and,
/// for a TLS connection, its session as the helpers encode it.
#[derive(Debug)]
pub(crate) struct Moved {
    pub fd: OwnedFd,
    pub buffered: Vec<u8>,
    pub tls: Option<Secret>,
}

impl Moved {
    fn into_handoff(self) -> Handoff {
        Handoff {
            stream: std::net::TcpStream::from(self.fd),
            buffered: self.buffered,
        }
    }

    /// Whether it fits in a message: at most [`MAX_CARRIED`] bytes read, and a TLS
    /// connection at most [`MAX_TLS_CARRIED`] with its session.
    fn fits(&self) -> bool {
        let session = self.tls.as_ref().map_or(0, Secret::len);
        self.buffered.len() <= MAX_CARRIED
            && (self.tls.is_none() || self.buffered.len() + session <= MAX_TLS_CARRIED)
    }
}

/// What a queue of connections handed in takes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Takes {
    /// Unix stream sockets too (the HTTP helpers, on a unix listener); [`Adoptions`]
    /// of the public API take TCP streams only.
    pub unix: bool,
    /// TLS connections, and only those (the HTTP helpers, on a listener they serve
    /// TLS on): a plaintext connection is declined, and so is a TLS one by a queue
    /// that does not take them.
    pub tls: bool,
}

/// Where a message to the supervisor goes: the child's channel writer.
pub(crate) trait Post: Send + Sync {
    /// Queues `msg` with `fds` attached; returns at once.
    fn post(&self, msg: ChildMsg, fds: Vec<OwnedFd>);
}

/// One listener's connections handed in and not taken yet.
#[derive(Default)]
struct Queue {
    items: Mutex<VecDeque<(u64, Moved)>>,
    arrived: Notify,
    takes: Takes,
}

/// The child's side of moving connections, shared by the program (through the
/// [`Context`](crate::Context)) and the thread that reads the supervisor's messages.
pub(crate) struct Moves {
    post: Box<dyn Post>,
    /// Whether the conversation with the supervisor speaks of moving connections
    /// (protocol 3).
    spoken: bool,
    /// Whether it speaks of moving TLS connections (protocol 7).
    tls_spoken: bool,
    /// The listeners whose connections the successor takes (said before lameduck).
    successor: Mutex<BTreeSet<String>>,
    next: AtomicU64,
    /// Connections handed over, waiting for the supervisor's word: taken (`true`) or
    /// returned; `None` once the supervisor is gone.
    waiting: Mutex<Option<HashMap<u64, oneshot::Sender<bool>>>>,
    /// The listeners this program adopts for, with what is handed in.
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    /// Set when lameduck has come: no connection is handed in after it.
    lameduck: watch::Receiver<bool>,
}

impl fmt::Debug for Moves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Moves")
            .field("spoken", &self.spoken)
            .field("successor", &*lock(&self.successor))
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Moves {
    /// The moves of a conversation of protocol `version` with the supervisor.
    pub(crate) fn new(post: Box<dyn Post>, version: u16, lameduck: watch::Receiver<bool>) -> Moves {
        Moves {
            post,
            spoken: version >= MOVES_SINCE,
            tls_spoken: version >= TLS_MOVES_SINCE,
            successor: Mutex::new(BTreeSet::new()),
            next: AtomicU64::new(1),
            waiting: Mutex::new(Some(HashMap::new())),
            queues: Mutex::new(HashMap::new()),
            lameduck,
        }
    }

    /// Whether `msg` is about moving connections.
    pub(crate) fn handles(msg: &SupervisorMsg) -> bool {
        !matches!(
            msg,
            SupervisorMsg::Welcome { .. }
                | SupervisorMsg::Refused { .. }
                | SupervisorMsg::Lameduck
                | SupervisorMsg::Standby
                | SupervisorMsg::Resume
                | SupervisorMsg::OnProbation { .. }
        )
    }

    /// A message of the supervisor's about moving connections, with its fds (any other
    /// is left alone).
    pub(crate) fn on_message(&self, msg: &SupervisorMsg, fds: Vec<OwnedFd>) {
        match msg {
            SupervisorMsg::Successor { adopts } => {
                lock(&self.successor).extend(adopts.iter().cloned());
            }
            SupervisorMsg::Adopt(parcels) => {
                let parcels = parcels.iter().map(|p| (p, None));
                self.handed_in(parcels, fds);
            }
            SupervisorMsg::AdoptTls(parcels) => {
                let parcels = parcels.iter().map(|p| (&p.parcel, Some(&p.session)));
                self.handed_in(parcels, fds);
            }
            SupervisorMsg::Taken(ids) => self.answered(ids, true),
            SupervisorMsg::Returned(ids) => self.answered(ids, false),
            SupervisorMsg::Recall(ids) => self.recall(ids),
            SupervisorMsg::Welcome { .. }
            | SupervisorMsg::Refused { .. }
            | SupervisorMsg::Lameduck
            | SupervisorMsg::Standby
            | SupervisorMsg::Resume
            | SupervisorMsg::StateWanted { .. }
            | SupervisorMsg::State(_)
            | SupervisorMsg::StateFds(_)
            | SupervisorMsg::NoState { .. }
            | SupervisorMsg::StateDone { .. }
            | SupervisorMsg::OnProbation { .. } => {}
        }
    }

    /// The supervisor is gone: nobody will answer for the connections handed over. They
    /// count as taken (their copies here are closed): the successor may have them, and
    /// two processes must never serve one connection.
    pub(crate) fn gone(&self) {
        for (_, waiter) in lock(&self.waiting).take().into_iter().flatten() {
            let _ = waiter.send(true);
        }
        for queue in lock(&self.queues).values() {
            queue.arrived.notify_waiters();
        }
    }

    /// Connections handed in, each with its fd, and its session if it is a TLS one: each
    /// goes to its listener's queue if that takes it, or is declined.
    fn handed_in<'p>(
        &self,
        parcels: impl Iterator<Item = (&'p Parcel, Option<&'p Secret>)>,
        fds: Vec<OwnedFd>,
    ) {
        let mut declined = Vec::new();
        let queues = lock(&self.queues);
        let mut fds = fds.into_iter();
        for (parcel, session) in parcels {
            let Some(fd) = fds.next() else {
                declined.push(parcel.id);
                continue;
            };
            // A session of a layout this build does not read cannot go on here.
            let layout = session.map(|s| s.expose().first() == Some(&TLS_SESSION_LAYOUT));
            match queues.get(&parcel.listener) {
                Some(queue)
                    if queue.takes.tls == session.is_some()
                        && layout != Some(false)
                        && is_stream_socket(&fd, queue.takes.unix) =>
                {
                    let moved = Moved {
                        fd,
                        buffered: parcel.bytes.clone(),
                        tls: session.cloned(),
                    };
                    lock(&queue.items).push_back((parcel.id, moved));
                    queue.arrived.notify_waiters();
                }
                _ => declined.push(parcel.id),
            }
        }
        drop(queues);
        if !declined.is_empty() {
            self.post.post(ChildMsg::Declined(declined), Vec::new());
        }
    }

    fn answered(&self, ids: &[u64], taken: bool) {
        let mut waiting = lock(&self.waiting);
        let Some(waiting) = waiting.as_mut() else {
            return;
        };
        for id in ids {
            if let Some(waiter) = waiting.remove(id) {
                let _ = waiter.send(taken);
            }
        }
    }

    fn recall(&self, ids: &[u64]) {
        let ids: BTreeSet<u64> = ids.iter().copied().collect();
        let mut declined = Vec::new();
        for queue in lock(&self.queues).values() {
            lock(&queue.items).retain(|(id, _)| {
                let keep = !ids.contains(id);
                if !keep {
                    declined.push(*id);
                }
                keep
            });
        }
        if !declined.is_empty() {
            self.post.post(ChildMsg::Declined(declined), Vec::new());
        }
    }

    /// The successor the supervisor named is not one any more (this process, standing
    /// by, serves again).
    pub(crate) fn forget_successor(&self) {
        lock(&self.successor).clear();
    }

    /// Whether the successor takes connections of `listener`.
    pub(crate) fn successor_adopts(&self, listener: &str) -> bool {
        lock(&self.successor).contains(listener)
    }

    /// Hands `moving` to the successor; `Err` gives it back if it does not move.
    pub(crate) async fn hand_over(&self, listener: &str, moving: Handoff) -> Result<(), Handoff> {
        let moving = Moved {
            fd: OwnedFd::from(moving.stream),
            buffered: moving.buffered,
            tls: None,
        };
        self.hand_over_moved(listener, moving)
            .await
            .map_err(Moved::into_handoff)
    }

    /// Hands `moving` (a TCP or unix connection, plaintext or TLS) to the successor;
    /// `Err` gives it back if it does not move.
    pub(crate) async fn hand_over_moved(&self, listener: &str, moving: Moved) -> Result<(), Moved> {
        let spoken = match moving.tls {
            None => self.spoken,
            Some(_) => self.tls_spoken,
        };
        if !spoken || !self.successor_adopts(listener) || !moving.fits() {
            return Err(moving);
        }
        let Ok(copy) = moving.fd.try_clone() else {
            return Err(moving);
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match lock(&self.waiting).as_mut() {
            Some(waiting) => waiting.insert(id, tx),
            // The supervisor is gone: nobody can take it.
            None => return Err(moving),
        };
        let parcel = Parcel {
            id,
            listener: listener.to_string(),
            bytes: moving.buffered.clone(),
        };
        let msg = match &moving.tls {
            None => ChildMsg::Hand(vec![parcel]),
            Some(session) => ChildMsg::HandTls(vec![TlsParcel {
                parcel,
                session: session.clone(),
            }]),
        };
        self.post.post(msg, vec![copy]);
        // No answer (the supervisor went away) counts as taken: see `gone`.
        let taken = rx.await.unwrap_or(true);
        if taken { Ok(()) } else { Err(moving) }
    }

    /// Opens the queue of connections handed in for `listener`, of the kinds it
    /// `takes`.
    pub(crate) fn adopt(self: &Arc<Self>, listener: &str, takes: Takes) -> io::Result<Adoptions> {
        let queue = Arc::new(Queue {
            takes,
            ..Queue::default()
        });
        {
            let mut queues = lock(&self.queues);
            if queues.contains_key(listener) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("connections of listener {listener:?} are adopted already"),
                ));
            }
            queues.insert(listener.to_string(), Arc::clone(&queue));
        }
        if self.spoken {
            self.post.post(
                ChildMsg::Adopts {
                    listener: listener.to_string(),
                },
                Vec::new(),
            );
        }
        Ok(Adoptions {
            moves: Some(Arc::clone(self)),
            listener: listener.to_string(),
            queue,
        })
    }

    /// The next connection handed in for `queue`, taken (and said so), or `None` once
    /// lameduck has come and none is left.
    async fn next(&self, queue: &Queue) -> Option<Moved> {
        self.wait_for(queue, |moves, queue| moves.take(queue, 1).pop())
            .await
    }

    /// Every connection handed in for `queue` and there now, at least one, taken and
    /// said so in one message; `None` once lameduck has come and none is left.
    async fn next_all(&self, queue: &Queue) -> Option<Vec<Moved>> {
        self.wait_for(queue, |moves, queue| {
            let taken = moves.take(queue, usize::MAX);
            (!taken.is_empty()).then_some(taken)
        })
        .await
    }

    /// What `take` takes from `queue`, once it takes something; `None` once lameduck
    /// has come and it takes nothing.
    async fn wait_for<T>(
        &self,
        queue: &Queue,
        take: impl Fn(&Moves, &Queue) -> Option<T>,
    ) -> Option<T> {
        let mut lameduck = self.lameduck.clone();
        loop {
            let arrived = queue.arrived.notified();
            let mut arrived = std::pin::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(taken) = take(self, queue) {
                return Some(taken);
            }
            if *lameduck.borrow() || !self.spoken {
                return None;
            }
            tokio::select! {
                _ = arrived => {}
                _ = lameduck.changed() => {}
            }
        }
    }

    /// Up to `max` connections from `queue`, taken; one message says which, and one
    /// which were not usable here (the process before keeps those).
    fn take(&self, queue: &Queue, max: usize) -> Vec<Moved> {
        let mut taken = Vec::new();
        let (mut adopted, mut declined) = (Vec::new(), Vec::new());
        while taken.len() < max {
            let Some((id, moved)) = lock(&queue.items).pop_front() else {
                break;
            };
            // Non-blocking, as the program's runtime wants it, or not taken.
            if rustix::io::ioctl_fionbio(&moved.fd, true).is_ok() {
                adopted.push(id);
                taken.push(moved);
            } else {
                declined.push(id);
            }
        }
        if !adopted.is_empty() {
            self.post.post(ChildMsg::Adopted(adopted), Vec::new());
        }
        if !declined.is_empty() {
            self.post.post(ChildMsg::Declined(declined), Vec::new());
        }
        taken
    }

    fn close(&self, listener: &str, queue: &Queue) {
        lock(&self.queues).remove(listener);
        let declined: Vec<u64> = lock(&queue.items).drain(..).map(|(id, _)| id).collect();
        if !declined.is_empty() {
            self.post.post(ChildMsg::Declined(declined), Vec::new());
        }
    }
}

/// Whether `fd` is a stream socket of TCP (or of a unix socket, if `unix`), as a
/// handed-in connection must be.
fn is_stream_socket(fd: &OwnedFd, unix: bool) -> bool {
    use rustix::net::AddressFamily;
    rustix::net::sockopt::socket_type(fd).is_ok_and(|t| t == rustix::net::SocketType::STREAM)
        && crate::sys::socket_family(std::os::fd::AsFd::as_fd(fd)).is_ok_and(|family| {
            family == AddressFamily::INET
                || family == AddressFamily::INET6
                || (unix && family == AddressFamily::UNIX)
        })
}

/// The connections of one listener that the process before hands in at a reload, from
/// [`Context::adopt`](crate::Context::adopt).
///
/// Each one is taken as [`next`](Self::next) returns it, and is this process's to serve
/// from then on, as if it had accepted it: its `buffered` bytes first. Dropping it
/// declines what is handed in after, and those connections stay with the process
/// before, which serves them to the end.
pub struct Adoptions {
    moves: Option<Arc<Moves>>,
    listener: String,
    queue: Arc<Queue>,
}

impl fmt::Debug for Adoptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adoptions")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Adoptions {
    /// Adoptions that never yield anything: a process with no supervisor.
    pub(crate) fn none(listener: &str) -> Adoptions {
        Adoptions {
            moves: None,
            listener: listener.to_string(),
            queue: Arc::new(Queue::default()),
        }
    }

    /// The next connection handed in; `None` once lameduck has come and every
    /// connection handed in before it is taken (none comes after), or at once with no
    /// supervisor or one that does not move connections.
    pub async fn next(&mut self) -> Option<Handoff> {
        match &self.moves {
            Some(moves) => moves.next(&self.queue).await.map(Moved::into_handoff),
            None => None,
        }
    }

    /// Every connection handed in and there now (at least one), taken with one answer
    /// to the supervisor, where [`next`](Self::next) takes one and answers for it: for
    /// a server that may take thousands at a reload. `None` when `next` would give
    /// `None`.
    ///
    /// ```no_run
    /// # async fn f(lb: littleboss::Context) -> std::io::Result<()> {
    /// let mut adopted = lb.adopt("http")?;
    /// lb.ready();
    /// while let Some(moved) = adopted.next_all().await {
    ///     for littleboss::Handoff { stream, buffered } in moved {
    ///         // Serve `stream`, `buffered` first, as if it had been accepted.
    /// #       drop((stream, buffered));
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next_all(&mut self) -> Option<Vec<Handoff>> {
        let moved = self.next_all_moved().await?;
        Some(moved.into_iter().map(Moved::into_handoff).collect())
    }

    /// [`next_all`](Self::next_all), as the HTTP helpers take them: TCP or unix
    /// streams, by their fds.
    pub(crate) async fn next_all_moved(&mut self) -> Option<Vec<Moved>> {
        match &self.moves {
            Some(moves) => moves.next_all(&self.queue).await,
            None => None,
        }
    }
}

impl Drop for Adoptions {
    fn drop(&mut self) {
        if let Some(moves) = &self.moves {
            moves.close(&self.listener, &self.queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use zeroize::Zeroizing;

    use super::*;

    /// What was posted to the supervisor.
    #[derive(Default)]
    struct Posted(Mutex<Vec<ChildMsg>>);

    impl Post for Arc<Posted> {
        fn post(&self, msg: ChildMsg, _: Vec<OwnedFd>) {
            lock(&self.0).push(msg);
        }
    }

    fn moves(version: u16) -> (Arc<Moves>, Arc<Posted>) {
        let posted = Arc::new(Posted::default());
        let (_, lameduck) = watch::channel(false);
        let moves = Moves::new(Box::new(Arc::clone(&posted)), version, lameduck);
        (Arc::new(moves), posted)
    }

    /// A connected TCP socket (its peer kept open by the listener's backlog).
    fn socket(listener: &TcpListener) -> OwnedFd {
        OwnedFd::from(TcpStream::connect(listener.local_addr().unwrap()).unwrap())
    }

    fn parcel(id: u64, listener: &str) -> Parcel {
        Parcel {
            id,
            listener: listener.to_string(),
            bytes: b"GET".to_vec(),
        }
    }

    fn session() -> Secret {
        Secret::new(Zeroizing::new(vec![TLS_SESSION_LAYOUT, 2, 3]))
    }

    #[test]
    fn a_queue_takes_tls_connections_or_plaintext_ones_never_both_and_sessions_it_reads() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (moves, posted) = moves(7);
        let plain = moves.adopt("http", Takes::default()).unwrap();
        let tls = (moves.adopt(
            "https",
            Takes {
                unix: false,
                tls: true,
            },
        ))
        .unwrap();
        let tls_parcels = vec![
            TlsParcel {
                parcel: parcel(1, "http"),
                session: session(),
            },
            TlsParcel {
                parcel: parcel(2, "https"),
                session: session(),
            },
            TlsParcel {
                parcel: parcel(5, "https"),
                session: Secret::new(Zeroizing::new(vec![TLS_SESSION_LAYOUT + 1, 2, 3])),
            },
        ];
        let fds = vec![socket(&listener), socket(&listener), socket(&listener)];
        moves.on_message(&SupervisorMsg::AdoptTls(tls_parcels), fds);
        let fds = vec![socket(&listener), socket(&listener)];
        let plain_parcels = vec![parcel(3, "http"), parcel(4, "https")];
        moves.on_message(&SupervisorMsg::Adopt(plain_parcels), fds);
        assert_eq!(
            lock(&posted.0)[2..],
            [ChildMsg::Declined(vec![1, 5]), ChildMsg::Declined(vec![4])]
        );
        let taken = moves.take(&plain.queue, usize::MAX);
        assert_eq!(taken.len(), 1);
        assert!(taken[0].tls.is_none());
        let taken = moves.take(&tls.queue, usize::MAX);
        assert_eq!(taken.len(), 1);
        assert_eq!(
            taken[0].tls.as_ref().map(Secret::expose),
            Some(&[TLS_SESSION_LAYOUT, 2, 3][..])
        );
        assert_eq!(taken[0].buffered, b"GET");
    }

    #[tokio::test]
    async fn a_tls_connection_is_handed_over_with_its_session_only_in_protocol_7() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        for version in [6, 7] {
            let (moves, posted) = moves(version);
            moves.on_message(
                &SupervisorMsg::Successor {
                    adopts: vec!["https".into()],
                },
                Vec::new(),
            );
            let moving = Moved {
                fd: socket(&listener),
                buffered: Vec::new(),
                tls: Some(session()),
            };
            let handing = moves.hand_over_moved("https", moving);
            let answer = tokio::time::timeout(Duration::from_millis(50), handing).await;
            if version == 6 {
                assert!(matches!(answer, Ok(Err(_))), "given back at once");
                assert!(lock(&posted.0).is_empty());
                continue;
            }
            assert!(answer.is_err(), "it waits for the supervisor's word");
            let posted = lock(&posted.0);
            let [ChildMsg::HandTls(parcels)] = posted.as_slice() else {
                panic!("{posted:?}");
            };
            assert_eq!(parcels[0].session.expose(), &[TLS_SESSION_LAYOUT, 2, 3]);
            assert_eq!(parcels[0].parcel.listener, "https");
        }
    }

    #[tokio::test]
    async fn a_tls_connection_too_large_to_carry_is_given_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (moves, posted) = moves(7);
        moves.on_message(
            &SupervisorMsg::Successor {
                adopts: vec!["https".into()],
            },
            Vec::new(),
        );
        let moving = Moved {
            fd: socket(&listener),
            buffered: vec![0; MAX_CARRIED],
            tls: Some(Secret::new(Zeroizing::new(vec![0; MAX_TLS_CARRIED]))),
        };
        assert!(moves.hand_over_moved("https", moving).await.is_err());
        assert!(lock(&posted.0).is_empty());
    }
}
