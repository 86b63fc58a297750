//! The [`Context`] a littleboss `main` receives: its listeners, lameduck, readiness and
//! state transfer.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::control::protocol::ChildMsg;
use crate::output::errln;

use crate::error::{Error, ListenerProblem};
#[cfg(feature = "hyper")]
use crate::handoff::Moved;
use crate::handoff::{Adoptions, Handoff, Moves, Takes};
#[cfg(feature = "hyper")]
use crate::http_counts::ListenerCounts;
use crate::spec::{Kind, Network};
use crate::state_transfer::{self, Inherited, StateRequest, StateTransfer};

/// The lameduck time when the program declared none.
pub(crate) const DEFAULT_LAMEDUCK: Duration = Duration::from_secs(2);

/// How the program is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Run directly (`--littleboss=bypass`, the default): the program bound its own
    /// listeners and no supervisor watches it.
    Bypass,
    /// Run as the child of a supervisor (`--littleboss=start`), which holds the listeners.
    Supervised,
}

/// One declared listener as the program sees it.
#[derive(Debug)]
pub(crate) struct Slot {
    pub name: String,
    pub network: Network,
    pub state: SlotState,
}

#[derive(Debug)]
pub(crate) enum SlotState {
    /// The socket, not yet taken by the program.
    Open(OwnedFd),
    /// Taken once already.
    Taken,
    /// Declared without an address, or turned off with `--NAME=`.
    Off,
    /// The supervisor serves its metrics on it (`metrics = "NAME"`).
    Supervisor,
}

/// Where what the program says to the supervisor goes ([`Context::ready`],
/// [`Context::unhealthy`], ...): the supervisor's channel, or nowhere in bypass mode.
pub(crate) trait Tell: Send + Sync {
    /// Queues `msg` for the supervisor; `false` if the conversation's protocol has no
    /// such message (it is not sent).
    fn tell(&self, msg: ChildMsg) -> bool;
}

/// What the supervisor said of this process's part in a probation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Standing {
    /// It stands by: a new process is on probation.
    pub standby: bool,
    /// It is on probation itself, until then.
    pub probation_until: Option<Instant>,
}

/// What moves between a supervised child and the processes before and after it:
/// connections, and the program's state.
#[derive(Debug)]
pub(crate) struct Moving {
    pub moves: Arc<Moves>,
    pub state: Arc<StateTransfer>,
}

/// Whether a process that gets `lameduck` and `standing` stands by or winds down now:
/// when it may give a later snapshot of its state.
pub(crate) fn winding_down(
    lameduck: &watch::Receiver<bool>,
    standing: &watch::Receiver<Standing>,
) -> state_transfer::WindingDown {
    let (lameduck, standing) = (lameduck.clone(), standing.clone());
    Box::new(move || *lameduck.borrow() || standing.borrow().standby)
}

/// What a littleboss `main` gets: its listeners, the lameduck signal, readiness, and its
/// arguments.
///
/// Cloning is cheap; every clone refers to the same listeners and signal.
///
/// ```no_run
/// #[littleboss::main(name = "echo", listener(tcp = "tcp:127.0.0.1:7000"))]
/// async fn main(lb: littleboss::Context) -> std::io::Result<()> {
///     let listener = lb.tcp_listener("tcp")?;
///     lb.ready();
///     loop {
///         tokio::select! {
///             _ = lb.lameduck() => return Ok(()),
///             conn = listener.accept() => {
///                 let (mut stream, _) = conn?;
///                 tokio::spawn(async move {
///                     let (mut r, mut w) = stream.split();
///                     let _ = tokio::io::copy(&mut r, &mut w).await;
///                 });
///             }
///         }
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    mode: Mode,
    slots: Mutex<Vec<Slot>>,
    lameduck: watch::Receiver<bool>,
    standing: watch::Receiver<Standing>,
    tell: Option<Box<dyn Tell>>,
    ready_sent: AtomicBool,
    /// Connections moving to and from the processes before and after (supervised).
    moves: Option<Arc<Moves>>,
    /// The state given to the process after and taken from the one before.
    state: Arc<StateTransfer>,
    args: Vec<OsString>,
    lameduck_time: OnceLock<Duration>,
    /// `calls_ready` and the `state_timeout`, which `take_state` needs.
    take_rules: OnceLock<(bool, Duration)>,
    /// `probation_5xx`, if declared.
    #[cfg(feature = "hyper")]
    five_xx: OnceLock<Option<u8>>,
    /// The responses counted during this process's probation.
    #[cfg(feature = "hyper")]
    responses: Mutex<Tally>,
    /// The HTTP helpers' counts for the supervisor's metrics, by listener, and the
    /// number of changes last reported.
    #[cfg(feature = "hyper")]
    http_counts: Mutex<std::collections::BTreeMap<String, Arc<ListenerCounts>>>,
    #[cfg(feature = "hyper")]
    reported: Mutex<Option<u64>>,
}

/// `mutex`, locked (a panic while it was held does not stop the counting).
#[cfg(feature = "hyper")]
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the program declared that its [`Context`] needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Declared {
    pub lameduck: Duration,
    /// What only the HTTP helpers read.
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub probation_5xx: Option<u8>,
    /// Whether the program calls `ready()` (`take_state` needs it).
    pub calls_ready: bool,
    /// How long `take_state` waits for the state.
    pub state_timeout: Duration,
}

/// How many responses a probation needs before their 5xx share can fail it.
#[cfg(feature = "hyper")]
pub(crate) const FIVE_XX_AFTER: u64 = 20;

/// Whether `errors` of `responses` fail a probation whose `probation_5xx` is `pct`: at
/// least [`FIVE_XX_AFTER`] answered, and more than `pct` percent of them 5xx.
#[cfg(feature = "hyper")]
fn share_fails(errors: u64, responses: u64, pct: u8) -> bool {
    responses >= FIVE_XX_AFTER
        && errors.saturating_mul(100) > u64::from(pct).saturating_mul(responses)
}

/// The HTTP helpers' responses during a probation.
#[cfg(feature = "hyper")]
#[derive(Debug, Default)]
struct Tally {
    responses: u64,
    errors: u64,
    /// The supervisor was told: nothing more is counted.
    told: bool,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("mode", &self.inner.mode)
            .field("lameduck", &self.is_lameduck())
            .field("args", &self.inner.args)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(
        mode: Mode,
        slots: Vec<Slot>,
        lameduck: watch::Receiver<bool>,
        standing: watch::Receiver<Standing>,
        tell: Option<Box<dyn Tell>>,
        moving: Option<Moving>,
        args: Vec<OsString>,
    ) -> Context {
        let (moves, state) = match moving {
            Some(Moving { moves, state }) => (Some(moves), state),
            // Without a supervisor no state comes and nobody asks for one, but the
            // calls are checked the same way, so that a program behaves alike either
            // way.
            None => {
                let state = StateTransfer::new(None, winding_down(&lameduck, &standing));
                (None, Arc::new(state))
            }
        };
        Context {
            inner: Arc::new(Inner {
                mode,
                slots: Mutex::new(slots),
                lameduck,
                standing,
                tell,
                ready_sent: AtomicBool::new(false),
                moves,
                state,
                args,
                lameduck_time: OnceLock::new(),
                take_rules: OnceLock::new(),
                #[cfg(feature = "hyper")]
                five_xx: OnceLock::new(),
                #[cfg(feature = "hyper")]
                responses: Mutex::new(Tally::default()),
                #[cfg(feature = "hyper")]
                http_counts: Mutex::default(),
                #[cfg(feature = "hyper")]
                reported: Mutex::new(None),
            }),
        }
    }

    /// The listener `name` as a tokio [`TcpListener`](tokio::net::TcpListener)
    /// (non-blocking, registered with the current tokio runtime).
    ///
    /// Each listener can be taken once. Errors: an undeclared name (the message lists
    /// the declared ones), a listener that is off, one already taken, a UDP listener, or
    /// no tokio runtime to register with; each an [`io::Error`] around an
    /// [`Error::Listener`](crate::Error::Listener) that says which.
    pub fn tcp_listener(&self, name: &str) -> io::Result<tokio::net::TcpListener> {
        in_runtime(name)?;
        tokio::net::TcpListener::from_std(self.take_std_tcp(name, true)?)
    }

    /// The listener `name` as a blocking [`std::net::TcpListener`].
    ///
    /// Errors as [`tcp_listener`](Self::tcp_listener), but it needs no runtime.
    ///
    /// Blocking mode belongs to the socket, which every process holding it shares: during
    /// a reload, the old and the new child. A program that waits with `poll` and then
    /// accepts must make the listener non-blocking (another process may take the
    /// connection first), as the `sync` example does.
    pub fn std_tcp_listener(&self, name: &str) -> io::Result<std::net::TcpListener> {
        self.take_std_tcp(name, false)
    }

    /// The listener `name` as a tokio [`UdpSocket`](tokio::net::UdpSocket)
    /// (non-blocking, registered with the current tokio runtime).
    ///
    /// Errors as [`tcp_listener`](Self::tcp_listener), with TCP and UDP swapped.
    pub fn udp_socket(&self, name: &str) -> io::Result<tokio::net::UdpSocket> {
        in_runtime(name)?;
        tokio::net::UdpSocket::from_std(self.take_std_udp(name, true)?)
    }

    /// The listener `name` as a blocking [`std::net::UdpSocket`].
    pub fn std_udp_socket(&self, name: &str) -> io::Result<std::net::UdpSocket> {
        self.take_std_udp(name, false)
    }

    /// The `unix:` listener `name` as a tokio [`UnixListener`](tokio::net::UnixListener)
    /// (non-blocking, registered with the current tokio runtime).
    pub fn unix_listener(&self, name: &str) -> io::Result<tokio::net::UnixListener> {
        in_runtime(name)?;
        tokio::net::UnixListener::from_std(self.take_std_unix(name, true)?)
    }

    /// The `unix:` listener `name` as a blocking
    /// [`std::os::unix::net::UnixListener`].
    pub fn std_unix_listener(&self, name: &str) -> io::Result<std::os::unix::net::UnixListener> {
        self.take_std_unix(name, false)
    }

    /// Resolves when the program must wind down: the supervisor asked it to (a `stop`,
    /// or a reload whose new process is ready), the supervisor is gone, or the process
    /// got SIGTERM (or, in bypass mode, SIGINT; there a second such signal exits at
    /// once).
    /// A supervised child gets SIGTERM from the kernel when its supervisor dies (Linux
    /// and FreeBSD), as well as seeing its channel close.
    ///
    /// Stop accepting, finish the work in flight, and return from `main`; the supervisor
    /// kills the process group if that takes longer than the `lameduck` option.
    pub fn lameduck(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.lameduck.clone();
        async move {
            // An error means the sender is gone, which only happens when the process
            // winds down; treat it as lameduck too.
            let _ = rx.wait_for(|lameduck| *lameduck).await;
        }
    }

    /// Whether [`lameduck`](Self::lameduck) has resolved.
    pub fn is_lameduck(&self) -> bool {
        *self.inner.lameduck.borrow()
    }

    /// The program's declared lameduck time (the `lameduck` option, 2 s by default): how
    /// long it has, from the moment [`lameduck`](Self::lameduck) resolves, before the
    /// supervisor kills its process group. The same value in bypass mode, so a program
    /// winds down the same way run either way.
    pub fn lameduck_time(&self) -> Duration {
        self.inner
            .lameduck_time
            .get()
            .copied()
            .unwrap_or(DEFAULT_LAMEDUCK)
    }

    /// Records what the program declared that its `Context` needs; done once, before
    /// `main`.
    pub(crate) fn declare(&self, declared: Declared) {
        let _ = self.inner.lameduck_time.set(declared.lameduck);
        let take_rules = (declared.calls_ready, declared.state_timeout);
        let _ = self.inner.take_rules.set(take_rules);
        #[cfg(feature = "hyper")]
        let _ = self.inner.five_xx.set(declared.probation_5xx);
    }

    /// Counts a response of the HTTP helpers while this process is on probation, and
    /// tells the supervisor once too many of them had a 5xx status
    /// (`probation_5xx`): at least [`FIVE_XX_AFTER`] answered and more than the share
    /// declared, over the whole probation.
    #[cfg(feature = "hyper")]
    pub(crate) fn count_response(&self, status: u16) {
        let Some(&Some(pct)) = self.inner.five_xx.get() else {
            return;
        };
        if !self.on_probation() {
            return;
        }
        let mut tally = self
            .inner
            .responses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if tally.told {
            return;
        }
        tally.responses += 1;
        if (500..600).contains(&status) {
            tally.errors += 1;
        }
        if share_fails(tally.errors, tally.responses, pct) {
            tally.told = true;
            let (errors, responses) = (tally.errors, tally.responses);
            drop(tally);
            if let Some(tell) = &self.inner.tell {
                tell.tell(ChildMsg::ServesErrors { errors, responses });
            }
        }
    }

    /// The HTTP helpers' counts of `listener` for the supervisor's metrics (`None`
    /// without the `metrics` feature, and in bypass mode, where no supervisor takes
    /// them). The first starts the thread that reports them.
    #[cfg(feature = "hyper")]
    pub(crate) fn http_counts(&self, listener: &str) -> Option<Arc<ListenerCounts>> {
        if !cfg!(feature = "metrics") {
            return None;
        }
        self.inner.tell.as_ref()?;
        let mut all = lock(&self.inner.http_counts);
        let first = all.is_empty();
        let counts = Arc::clone(all.entry(listener.to_string()).or_default());
        drop(all);
        if first {
            let ctx = self.clone();
            let _ = std::thread::Builder::new()
                .name("littleboss-counts".into())
                .spawn(move || {
                    while ctx.report_counts() {
                        std::thread::sleep(crate::http_counts::REPORT_EVERY);
                    }
                });
        }
        Some(counts)
    }

    /// Reports the HTTP helpers' counts if they changed since the last report: `false`
    /// once the supervisor cannot take them (a protocol before 5, or none).
    #[cfg(feature = "hyper")]
    pub(crate) fn report_counts(&self) -> bool {
        let Some(tell) = &self.inner.tell else {
            return false;
        };
        let mut reported = lock(&self.inner.reported);
        let all = lock(&self.inner.http_counts);
        let changes: u64 = all.values().map(|c| c.changes()).sum();
        if all.is_empty() || *reported == Some(changes) {
            return true;
        }
        let counts = (all.iter()).map(|(name, c)| c.snapshot(name)).collect();
        drop(all);
        *reported = Some(changes);
        tell.tell(ChildMsg::Counts(counts))
    }

    /// Tells the supervisor that the program is serving.
    ///
    /// During a reload the old process is wound down only once the new one is ready. A
    /// program that declares `calls_ready = true` is waited for up to its ready timeout;
    /// one that does not is taken as ready after its settle time. Calling it again, or in
    /// bypass mode, does nothing.
    ///
    /// It returns at once, in async code too: the message is queued for a thread of
    /// littleboss's that sends it, even if the supervisor is slow to read.
    pub fn ready(&self) {
        if self.inner.ready_sent.swap(true, Ordering::SeqCst) {
            return;
        }
        // A state is taken before ready: one still awaited is void.
        self.inner.state.ready_called();
        if let Some(tell) = &self.inner.tell {
            tell.tell(ChildMsg::Ready);
        }
    }

    /// Declares that this program can stand by: when a process it is reloaded to is on
    /// probation (the new binary declares `probation`), this one stops accepting and
    /// waits, warm, instead of winding down, and accepts again at once if the new one
    /// fails. Call it before [`ready`](Self::ready); the HTTP helpers call it
    /// themselves.
    ///
    /// A program that declares it selects on [`standby`](Self::standby) in its accept
    /// loop, and while standing by, on [`resumed`](Self::resumed) and
    /// [`lameduck`](Self::lameduck). A program whose accept loop blocks a thread in
    /// `accept` cannot stand by: nothing but `shutdown` wakes it, and that would stop
    /// the listening socket the processes share. It does not declare it, and gets
    /// lameduck as before. It is the whole process that stands by: a program with
    /// several listeners stops accepting on all of them, and does not read a UDP
    /// socket while standing by (the new process reads the datagrams). The HTTP
    /// helpers declare it for the process: a program that serves one listener with
    /// them and another with code of its own makes that code stand by too.
    ///
    /// ```no_run
    /// # async fn f(lb: littleboss::Context) -> std::io::Result<()> {
    /// let listener = lb.tcp_listener("http")?;
    /// lb.can_stand_by();
    /// lb.ready();
    /// let mut listener = Some(listener);
    /// let mut parked = None;
    /// loop {
    ///     tokio::select! {
    ///         // From standing by too, if the new process passed its probation.
    ///         _ = lb.lameduck() => return Ok(()),
    ///         // Out of the runtime: epoll no longer wakes this process for each
    ///         // connection the new process takes.
    ///         _ = lb.standby(), if listener.is_some() => {
    ///             parked = listener.take().map(|l| l.into_std()).transpose()?;
    ///         }
    ///         // The new process failed: accept again.
    ///         _ = lb.resumed(), if parked.is_some() => {
    ///             listener = parked.take().map(tokio::net::TcpListener::from_std).transpose()?;
    ///         }
    ///         accepted = async { listener.as_ref().unwrap().accept().await }, if listener.is_some() => {
    ///             let (_stream, _peer) = accepted?;
    ///             // serve it
    ///         }
    ///     }
    /// }
    /// # }
    /// ```
    pub fn can_stand_by(&self) {
        if let Some(tell) = &self.inner.tell {
            tell.tell(ChildMsg::CanStandBy);
        }
    }

    /// Resolves when the supervisor asks this process to stand by (it declared
    /// [`can_stand_by`](Self::can_stand_by) and a new process is on probation): stop
    /// accepting, and treat the open connections as at lameduck (idle ones move to the
    /// new process), but do not exit. Never resolves in bypass mode.
    pub fn standby(&self) -> impl Future<Output = ()> + Send + 'static {
        self.standing_until(|s| s.standby)
    }

    /// Resolves when this process is not standing by: at once if it is not, else when
    /// the new process failed its probation and this one serves again (accept again).
    /// If the new process passes, [`lameduck`](Self::lameduck) resolves instead.
    pub fn resumed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.standing_until(|s| !s.standby)
    }

    /// Resolves once what the supervisor said of this process's part in a probation
    /// meets `wanted`; never if it cannot any more (bypass mode, or the supervisor is
    /// gone: lameduck says the rest).
    fn standing_until(
        &self,
        wanted: fn(&Standing) -> bool,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.standing.clone();
        async move {
            if rx.wait_for(wanted).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether this process stands by ([`standby`](Self::standby) has resolved and
    /// [`resumed`](Self::resumed) has not since).
    pub fn is_standby(&self) -> bool {
        self.inner.standing.borrow().standby
    }

    /// Says that this process is not well: if it is a new process on probation (or
    /// about to be: a new process that says it before it is ready fails its probation
    /// as soon as that begins), the supervisor rolls the reload back at once, to the
    /// old process standing by (this one gets lameduck), or to the previous binary
    /// (this one serves until that one is ready; with `fallback = false` nothing is
    /// started and this one serves on). Outside a probation, and in bypass mode, it is
    /// ignored, with one log line. A long reason is cut to 4 KiB.
    ///
    /// ```no_run
    /// # async fn f(lb: littleboss::Context, db_ok: bool) {
    /// if !db_ok {
    ///     lb.unhealthy("cannot reach the database");
    /// }
    /// # }
    /// ```
    pub fn unhealthy(&self, reason: impl Into<String>) {
        // Cut to fit a message: the supervisor quotes the start of it anyway.
        let reason = crate::control::protocol::capped(reason.into());
        let told = match &self.inner.tell {
            Some(tell) => tell.tell(ChildMsg::Unhealthy {
                reason: reason.clone(),
            }),
            None => false,
        };
        if !told {
            let why = match self.inner.mode {
                Mode::Bypass => "in bypass mode",
                Mode::Supervised => "the supervisor's protocol has no probation",
            };
            errln!("littleboss: unhealthy ({reason}) ignored: {why}");
        }
    }

    /// Resolves at lameduck, or when this process stands by: either way it winds its
    /// connections down (the HTTP helpers).
    #[cfg(feature = "hyper")]
    pub(crate) fn winding_down(&self) -> impl Future<Output = ()> + Send + 'static {
        let (lameduck, standby) = (self.lameduck(), self.standby());
        async move {
            tokio::select! {
                () = lameduck => {}
                () = standby => {}
            }
        }
    }

    /// Whether [`winding_down`](Self::winding_down) has resolved: lameduck has come, or
    /// this process stands by.
    #[cfg(feature = "hyper")]
    pub(crate) fn is_winding_down(&self) -> bool {
        self.is_lameduck() || self.is_standby()
    }

    /// Whether this process is a new one on probation now.
    #[cfg(feature = "hyper")]
    pub(crate) fn on_probation(&self) -> bool {
        (self.inner.standing.borrow().probation_until).is_some_and(|until| Instant::now() < until)
    }

    /// Whether the process that succeeds this one at a reload takes the idle connections
    /// of listener `name` ([`hand_over`](Self::hand_over)). Known once
    /// [`lameduck`](Self::lameduck) has resolved; always `false` before, in bypass mode,
    /// at a stop, and under a supervisor of a release that does not move connections.
    pub fn successor_adopts(&self, name: &str) -> bool {
        self.inner
            .moves
            .as_ref()
            .is_some_and(|moves| moves.successor_adopts(name))
    }

    /// Hands an idle connection of listener `name` to the process that succeeds this one,
    /// instead of closing it: the client sees no close, and its next request is answered
    /// by the new process. Call it in lameduck, between two requests (no request in
    /// flight, the last response written in full), with the bytes read from the
    /// connection and not parsed yet.
    ///
    /// `Ok` once the new process has taken it (this process's copy is closed). `Err`
    /// gives it back, to serve to the end here as without a successor: when
    /// [`successor_adopts`](Self::successor_adopts) is `false`, when `buffered` holds
    /// more than 16 KiB, or when the new process did not take it in time. If the
    /// supervisor goes away meanwhile, it counts as taken (the new process may have it,
    /// and two processes must never serve one connection). Dropping the future before it
    /// resolves closes this process's copy: the connection is then the new process's if
    /// it takes it, and closed if not.
    ///
    /// ```no_run
    /// # async fn f(lb: littleboss::Context, stream: tokio::net::TcpStream, buffered: Vec<u8>) -> std::io::Result<()> {
    /// lb.lameduck().await;
    /// let moving = littleboss::Handoff { stream: stream.into_std()?, buffered };
    /// match lb.hand_over("http", moving).await {
    ///     Ok(()) => {}               // The new process serves it.
    ///     Err(kept) => drop(kept),   // Serve it to the end here (or close it).
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn hand_over(&self, name: &str, moving: Handoff) -> Result<(), Handoff> {
        match &self.inner.moves {
            Some(moves) => moves.hand_over(name, moving).await,
            None => Err(moving),
        }
    }

    /// [`hand_over`](Self::hand_over), for the HTTP helpers: a TCP or a unix
    /// connection.
    #[cfg(feature = "hyper")]
    pub(crate) async fn hand_over_moved(&self, name: &str, moving: Moved) -> Result<(), Moved> {
        match &self.inner.moves {
            Some(moves) => moves.hand_over_moved(name, moving).await,
            None => Err(moving),
        }
    }

    /// The connections of listener `name` that the process before hands over at a
    /// reload (with [`hand_over`](Self::hand_over), as the HTTP helpers do). Call it
    /// before [`ready`](Self::ready): the supervisor tells the process before to hand
    /// connections over only to a new process that adopts them by the time it is ready.
    ///
    /// ```no_run
    /// #[littleboss::main(name = "echo", listener(tcp = "tcp:127.0.0.1:7000"), calls_ready = true)]
    /// async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    ///     let listener = lb.tcp_listener("tcp")?;
    ///     let mut adopted = lb.adopt("tcp")?;
    ///     lb.ready();
    ///     loop {
    ///         let stream = tokio::select! {
    ///             _ = lb.lameduck() => return Ok(()),
    ///             Some(moved) = adopted.next() => tokio::net::TcpStream::from_std(moved.stream)?,
    ///             accepted = listener.accept() => accepted?.0,
    ///         };
    ///         // ... serve `stream` (after the bytes `moved.buffered`, for a moved one).
    /// #       drop(stream);
    ///     }
    /// }
    /// ```
    ///
    /// It takes TCP connections: on a unix listener, a connection handed in is declined
    /// and the process before serves it to the end (the HTTP helpers move unix
    /// connections with a path of their own).
    ///
    /// Errors: an undeclared name, or one adopted already. In bypass mode it yields
    /// nothing.
    pub fn adopt(&self, name: &str) -> io::Result<Adoptions> {
        self.adopt_of(name, Takes::default())
    }

    /// [`adopt`](Self::adopt), for the HTTP helpers: unix connections are taken too,
    /// and TLS ones (only those) if `tls`.
    #[cfg(feature = "hyper")]
    pub(crate) fn adopt_streams(&self, name: &str, tls: bool) -> io::Result<Adoptions> {
        self.adopt_of(name, Takes { unix: true, tls })
    }

    fn adopt_of(&self, name: &str, takes: Takes) -> io::Result<Adoptions> {
        {
            let slots = self
                .inner
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !slots.iter().any(|s| s.name == name) {
                return Err(undeclared(name, &slots));
            }
        }
        match &self.inner.moves {
            Some(moves) => moves.adopt(name, takes),
            None => Ok(Adoptions::none(name)),
        }
    }

    /// Takes the state of the process this one replaces at a reload (state transfer):
    /// the bytes and named fds it gives with [`StateRequest::give`], a snapshot it
    /// keeps serving beside until this process is ready. Call it once, before
    /// [`ready`](Self::ready), in a program that declares `calls_ready = true`.
    ///
    /// `Ok(None)`: there is no state to take. No process is replaced (the first start,
    /// a restart after a crash, bypass mode), the one replaced offers none (it never
    /// calls [`state_wanted`](Self::state_wanted)) or declined to give it, or the
    /// supervisor is of a release without state transfer.
    ///
    /// `Err` ([`Error::State`], or [`Error::Timeout`]) says why none came: the process
    /// replaced did not answer within the `state_timeout` (5 s by default, see
    /// [`Littleboss::state_timeout`](crate::Littleboss::state_timeout)), could not give
    /// it (over the limits), or exited halfway; what came is not a sealed file of the
    /// size its message said; this process is out of fds. The program decides: start
    /// cold, or refuse to become ready (the reload then fails, and the process
    /// replaced keeps serving with its state). Misuse is an error too: without
    /// `calls_ready = true` (a program ready after its settle time could be declared
    /// ready while it waits), a second call (the state is taken once, and one call
    /// while another waits), a call after `ready()` (a later snapshot comes through
    /// [`state_updated`](Self::state_updated)). Calling `ready()` while it waits voids
    /// the transfer; dropping the future gives the state up.
    ///
    /// ```no_run
    /// # #[derive(Default, serde::Deserialize)] struct Cache;
    /// #[littleboss::main(name = "cache", listener(http = "tcp::8080"), calls_ready = true)]
    /// async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    ///     const FORMAT: u32 = 1;
    ///     let cache: Cache = match lb.take_state().await {
    ///         Ok(Some(inherited)) => inherited.take_value(FORMAT).unwrap_or_default(),
    ///         Ok(None) => Cache::default(),
    ///         Err(e) => {
    ///             eprintln!("starting cold: {e}");
    ///             Cache::default()
    ///         }
    ///     };
    ///     let listener = lb.tcp_listener("http")?;
    ///     lb.ready();
    ///     // serve with `cache`
    /// #   drop((cache, listener));
    ///     Ok(())
    /// }
    /// ```
    pub fn take_state(
        &self,
    ) -> impl Future<Output = Result<Option<Inherited>, Error>> + Send + 'static {
        let (calls_ready, timeout) = self
            .inner
            .take_rules
            .get()
            .copied()
            .unwrap_or((false, littleboss_rules::wait::DEFAULT_STATE_TIMEOUT));
        let wait = timeout.saturating_add(state_transfer::MARGIN);
        self.inner.state.take(calls_ready, timeout, wait)
    }

    /// Resolves when a new process asks for this one's state (it called
    /// [`take_state`](Self::take_state) at a reload), once per new process that asks:
    /// answer the [`StateRequest`] with [`give`](StateRequest::give) or
    /// [`give_value`](StateRequest::give_value), or drop it to give none. The first
    /// call offers this process's state: a process that never calls it offers none,
    /// and a new process that asks gets `Ok(None)` at once. Never resolves in bypass
    /// mode, nor under a supervisor of a release without state transfer.
    ///
    /// Call it again for the next request: a reload that fails changes nothing here,
    /// and the next new process asks again.
    ///
    /// ```no_run
    /// # #[derive(Clone, serde::Serialize)] struct Cache;
    /// # async fn f(lb: littleboss::Context, cache: std::sync::Arc<std::sync::Mutex<Cache>>) {
    /// const FORMAT: u32 = 1;
    /// tokio::spawn(async move {
    ///     loop {
    ///         let request = lb.state_wanted().await;
    ///         let snapshot = cache.lock().unwrap().clone();
    ///         match request.give_value(FORMAT, &snapshot, Vec::new()) {
    ///             // false: the reload failed; this process serves on with its cache.
    ///             Ok(given) => { let _committed = given.outcome().await; }
    ///             Err(e) => eprintln!("no state given: {e}"),
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn state_wanted(&self) -> impl Future<Output = StateRequest> + Send + 'static {
        self.inner.state.wanted()
    }

    /// Resolves with the one later snapshot that the process this one replaced gave
    /// with [`Given::update`](crate::Given::update) (what it wrote after its first
    /// snapshot, given while it stood by or wound down, once this process was ready).
    /// Only once: a second call never resolves, and neither does any if no later
    /// snapshot comes (most reloads have none).
    ///
    /// ```no_run
    /// # async fn f(lb: littleboss::Context) {
    /// tokio::spawn(async move {
    ///     let later = lb.state_updated().await;
    ///     // apply `later.bytes()` over what `take_state` gave
    /// #   drop(later);
    /// });
    /// # }
    /// ```
    pub fn state_updated(&self) -> impl Future<Output = Inherited> + Send + 'static {
        self.inner.state.updated()
    }

    /// The program's arguments without the flags littleboss owns (`--littleboss=MODE`
    /// and the listener flags), starting with the program name: ready for
    /// `clap::Parser::parse_from`.
    pub fn args(&self) -> Vec<OsString> {
        self.inner.args.clone()
    }

    /// Whether the program runs directly or under a supervisor.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    fn take(&self, name: &str, kind: Kind) -> io::Result<OwnedFd> {
        let mut slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(slot) = slots.iter_mut().find(|s| s.name == name) else {
            return Err(undeclared(name, &slots));
        };
        let problem = |problem| Error::Listener {
            listener: name.to_string(),
            problem,
        };
        if slot.network.kind() != kind {
            return Err(problem(ListenerProblem::WrongKind {
                network: slot.network,
                wanted: kind.as_str(),
            })
            .into());
        }
        match std::mem::replace(&mut slot.state, SlotState::Taken) {
            SlotState::Open(fd) => Ok(fd),
            SlotState::Taken => Err(problem(ListenerProblem::Taken).into()),
            SlotState::Off => {
                slot.state = SlotState::Off;
                Err(problem(ListenerProblem::Off).into())
            }
            SlotState::Supervisor => {
                slot.state = SlotState::Supervisor;
                Err(problem(ListenerProblem::Supervisor).into())
            }
        }
    }

    fn take_std_tcp(&self, name: &str, nonblocking: bool) -> io::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::from(self.take(name, Kind::Tcp)?);
        listener.set_nonblocking(nonblocking)?;
        Ok(listener)
    }

    fn take_std_udp(&self, name: &str, nonblocking: bool) -> io::Result<std::net::UdpSocket> {
        let socket = std::net::UdpSocket::from(self.take(name, Kind::Udp)?);
        socket.set_nonblocking(nonblocking)?;
        Ok(socket)
    }

    fn take_std_unix(
        &self,
        name: &str,
        nonblocking: bool,
    ) -> io::Result<std::os::unix::net::UnixListener> {
        let listener = std::os::unix::net::UnixListener::from(self.take(name, Kind::Unix)?);
        listener.set_nonblocking(nonblocking)?;
        Ok(listener)
    }
}

/// The error for a listener name that is not declared, listing the declared ones.
fn undeclared(name: &str, slots: &[Slot]) -> io::Error {
    Error::Listener {
        listener: name.to_string(),
        problem: ListenerProblem::Undeclared {
            declared: slots.iter().map(|s| s.name.clone()).collect(),
        },
    }
    .into()
}

fn in_runtime(name: &str) -> io::Result<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::Listener {
            listener: name.to_string(),
            problem: ListenerProblem::NoRuntime,
        }
        .into()),
    }
}

#[cfg(all(test, feature = "hyper"))]
mod tests {
    use super::share_fails;

    #[test]
    fn a_5xx_share_fails_a_probation_only_past_its_share_of_twenty_or_more() {
        for (errors, responses, pct, fails) in [
            // Fewer than twenty answered: never, however many failed.
            (19, 19, 1, false),
            (0, 0, 1, false),
            // Exactly the share is not more than it.
            (1, 20, 5, false),
            (2, 20, 5, true),
            (12, 100, 12, false),
            (13, 100, 12, true),
            (57, 57, 100, false),
            (20, 20, 99, true),
            (0, 1_000, 1, false),
            (u64::MAX, u64::MAX / 100, 100, true),
        ] {
            assert_eq!(
                share_fails(errors, responses, pct),
                fails,
                "{errors} of {responses} at {pct}%"
            );
        }
    }
}
