//! State transfer, the child's side: what a program built (bytes and named fds) goes
//! from the process a reload replaces to the new one.
//!
//! The new process asks before it is ready ([`Context::take_state`]): the ask goes to
//! the supervisor, which asks the process it replaces, if that one offers its state
//! (it called [`Context::state_wanted`]), and relays the answer. The old process,
//! still serving, answers with a snapshot ([`StateRequest::give`]): the bytes go into
//! a sealed file ([`sealed`]) whose fd travels with the head of the answer, and the
//! named fds follow in messages of their own, so that the supervisor never holds the
//! bytes. It keeps its own state and the fds it gave until the supervisor says how the
//! reload ended ([`Given::outcome`]): a failed reload loses nothing, and the next new
//! process asks again. Once the new process is ready, the old one, standing by or in
//! lameduck, may give one later snapshot ([`Given::update`],
//! [`Context::state_updated`]).
//!
//! [`StateTransfer`] is where the two sides meet the channel: the thread that reads
//! the supervisor's messages hands it theirs, and the program's calls go through it.
//! The giver has at most one request at a time (a supervisor runs one reload at a
//! time); the taker takes once. The giver's side is in `give`, what the taker gets in
//! `inherited` (as it is received, in `receive`); what a state may hold is `limits`,
//! the file its bytes travel in `sealed`, a typed state's format `value`.
//!
//! [`Context::take_state`]: crate::Context::take_state
//! [`Context::state_wanted`]: crate::Context::state_wanted
//! [`Context::state_updated`]: crate::Context::state_updated

mod give;
mod inherited;
mod limits;
mod receive;
mod sealed;
#[cfg(test)]
mod tests;
mod value;

use std::fmt;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};

use crate::control::protocol::{ChildMsg, StateHeader, SupervisorMsg, capped};
use crate::error::{Error, StateProblem};
use crate::handoff::Post;
use crate::output::errln;
use give::Prepared;
pub use give::{Given, StateRequest};
pub use inherited::Inherited;
use receive::{Progress, Receiving};

/// How much longer than its `state_timeout` a new process waits for its state. The
/// supervisor answers at the timeout; the margin bounds the wait on one that does not.
pub(crate) const MARGIN: Duration = Duration::from_secs(1);

/// What `take_state` gives.
type Taken = Result<Option<Inherited>, Error>;

/// Whether this process stands by or winds down now (what the supervisor said, as the
/// [`Context`](crate::Context) knows it).
pub(crate) type WindingDown = Box<dyn Fn() -> bool + Send + Sync>;

/// The child's side of state transfer, shared by the program (through the
/// [`Context`](crate::Context) and what it hands out) and the thread that reads the
/// supervisor's messages.
pub(crate) struct StateTransfer {
    /// Where messages to the supervisor go: `None` when there is no supervisor, or
    /// one whose protocol has no state transfer (before 6).
    post: Option<Box<dyn Post>>,
    /// For [`Given::update`]: whether this process stands by or winds down.
    winding_down: WindingDown,
    /// Whether `OffersState` was sent.
    offered: AtomicBool,
    next_id: AtomicU64,
    shared: Mutex<Shared>,
    /// A request came for `state_wanted`.
    asked: Notify,
    /// A later snapshot came for `state_updated`.
    snapshot: Notify,
}

impl fmt::Debug for StateTransfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateTransfer")
            .field("spoken", &self.post.is_some())
            .field("offered", &self.offered.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What changes as messages come and the program calls.
#[derive(Debug, Default)]
struct Shared {
    /// `ready()` was called.
    ready: bool,
    /// The supervisor is gone.
    gone: bool,
    taking: Taking,
    /// A state whose head came and whose fds are still coming.
    receiving: Option<Receiving>,
    snapshot: Snapshot,
    /// The one request answered or to answer.
    giving: Option<Giving>,
}

/// Where this process's `take_state` is.
#[derive(Debug, Default)]
enum Taking {
    #[default]
    NotAsked,
    /// Asked; the answer goes to `reply`. Dropping `_timer` ends the thread that
    /// would end the wait.
    Waiting {
        reply: oneshot::Sender<Taken>,
        _timer: mpsc::Sender<()>,
    },
    /// Answered (`took`: with a state, whose later snapshot may follow).
    Done { took: bool },
}

/// The one later snapshot, for `state_updated`.
#[derive(Debug, Default)]
enum Snapshot {
    #[default]
    Awaited,
    Arrived(Inherited),
    /// Given to the program, or none will come.
    Over,
}

/// A request for this process's state.
#[derive(Debug)]
struct Giving {
    id: u64,
    successor: u32,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// Waiting for the program's `state_wanted`.
    Queued,
    /// The program holds the [`StateRequest`].
    Handed,
    /// Sent; the fds given are kept until the outcome.
    Given {
        kept: Vec<OwnedFd>,
        outcome: watch::Sender<Option<bool>>,
    },
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StateTransfer {
    /// The side of a process whose messages to the supervisor go to `post`: `None`
    /// when it has no supervisor (bypass mode), or one whose protocol has no state
    /// transfer (before 6). Then no state comes, and nobody asks for one.
    /// A later snapshot may be given while `winding_down` says so.
    pub(crate) fn new(post: Option<Box<dyn Post>>, winding_down: WindingDown) -> StateTransfer {
        StateTransfer {
            post,
            winding_down,
            offered: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            shared: Mutex::new(Shared::default()),
            asked: Notify::new(),
            snapshot: Notify::new(),
        }
    }

    /// Whether `msg` is about state transfer.
    pub(crate) fn handles(msg: &SupervisorMsg) -> bool {
        matches!(
            msg,
            SupervisorMsg::StateWanted { .. }
                | SupervisorMsg::State(_)
                | SupervisorMsg::StateFds(_)
                | SupervisorMsg::NoState { .. }
                | SupervisorMsg::StateDone { .. }
        )
    }

    /// A message of the supervisor's about state transfer, with its fds, `cut` if the
    /// kernel dropped some of them (any other message is left alone, its fds closed).
    pub(crate) fn on_message(&self, msg: SupervisorMsg, fds: Vec<OwnedFd>, cut: bool) {
        match msg {
            SupervisorMsg::StateWanted { successor } => self.wanted_by(successor),
            SupervisorMsg::StateDone { committed } => self.done(committed),
            SupervisorMsg::State(head) => self.head(head, fds, cut),
            SupervisorMsg::StateFds(names) => self.named(names, fds, cut),
            SupervisorMsg::NoState { reason } => self.no_state(reason),
            _ => {}
        }
    }

    /// The supervisor is gone: no state will come, and no transfer is committed.
    pub(crate) fn gone(&self) {
        let mut shared = lock(&self.shared);
        shared.gone = true;
        shared.receiving = None;
        complete_take(&mut shared, Err(StateProblem::SupervisorGone.into()));
        if let Some(giving) = shared.giving.take() {
            end(giving, false);
        }
    }

    /// `ready()` was called: a state is taken before it, so one still awaited is void
    /// (the supervisor voids it too, and tells the giver).
    pub(crate) fn ready_called(&self) {
        let mut shared = lock(&self.shared);
        shared.ready = true;
        drop_take_receiving(&mut shared);
        complete_take(&mut shared, Err(StateProblem::ReadyWhileWaiting.into()));
    }

    /// `take_state`: asks for the state of the process this one replaces and waits up
    /// to `wait` for it; the supervisor is told to wait up to `asked`.
    pub(crate) fn take(
        self: &Arc<Self>,
        calls_ready: bool,
        asked: Duration,
        wait: Duration,
    ) -> impl Future<Output = Taken> + Send + 'static {
        let begun = self.begin_take(calls_ready, asked, wait);
        let hub = Arc::clone(self);
        async move {
            let reply = match begun {
                Ok(reply) => reply,
                Err(now) => return now,
            };
            // Dropped before the answer: the state is given up.
            let _abandon = Abandon(hub);
            reply
                .await
                .unwrap_or_else(|_| Err(StateProblem::SupervisorGone.into()))
        }
    }

    /// Asks, if this call may: the answer's receiver, or the answer now.
    fn begin_take(
        self: &Arc<Self>,
        calls_ready: bool,
        asked: Duration,
        wait: Duration,
    ) -> Result<oneshot::Receiver<Taken>, Taken> {
        if !calls_ready {
            return Err(Err(StateProblem::NeedsCallsReady.into()));
        }
        let mut shared = lock(&self.shared);
        if shared.ready {
            return Err(Err(StateProblem::AfterReady.into()));
        }
        match shared.taking {
            Taking::NotAsked => {}
            Taking::Waiting { .. } => return Err(Err(StateProblem::Waiting.into())),
            Taking::Done { .. } => return Err(Err(StateProblem::Taken.into())),
        }
        let Some(post) = &self.post else {
            shared.taking = Taking::Done { took: false };
            return Err(Ok(None));
        };
        if shared.gone {
            shared.taking = Taking::Done { took: false };
            return Err(Err(StateProblem::SupervisorGone.into()));
        }
        let (reply, answer) = oneshot::channel();
        let (timer, expiry) = mpsc::channel::<()>();
        shared.taking = Taking::Waiting {
            reply,
            _timer: timer,
        };
        let timeout_ms = u64::try_from(asked.as_millis()).unwrap_or(u64::MAX);
        post.post(ChildMsg::StateAsk { timeout_ms }, Vec::new());
        drop(shared);
        // Without a thread, nothing would end the wait if no answer came; a thread, not
        // a tokio timer, so that a program with no runtime can call it too. It ends
        // as soon as the answer comes (the sender is dropped).
        let hub = Arc::clone(self);
        let _ = std::thread::Builder::new()
            .name("littleboss-state".into())
            .spawn(move || {
                if expiry.recv_timeout(wait) == Err(mpsc::RecvTimeoutError::Timeout) {
                    hub.take_timed_out(wait);
                }
            });
        Ok(answer)
    }

    fn take_timed_out(&self, wait: Duration) {
        let mut shared = lock(&self.shared);
        if !matches!(shared.taking, Taking::Waiting { .. }) {
            return;
        }
        drop_take_receiving(&mut shared);
        let timeout = Error::Timeout {
            operation: "the state of the process this one replaces".into(),
            within: wait,
        };
        complete_take(&mut shared, Err(timeout));
    }

    /// The program dropped its `take_state` before the answer.
    fn abandon_take(&self) {
        let mut shared = lock(&self.shared);
        if matches!(shared.taking, Taking::Waiting { .. }) {
            drop_take_receiving(&mut shared);
            shared.taking = Taking::Done { took: false };
        }
    }

    /// `state_wanted`: the first call offers this process's state.
    pub(crate) fn wanted(self: &Arc<Self>) -> impl Future<Output = StateRequest> + Send + 'static {
        if let Some(post) = &self.post {
            if !self.offered.swap(true, Ordering::SeqCst) {
                post.post(ChildMsg::OffersState, Vec::new());
            }
        }
        let hub = Arc::clone(self);
        async move {
            if hub.post.is_none() {
                return std::future::pending().await;
            }
            loop {
                let mut asked = pin!(hub.asked.notified());
                asked.as_mut().enable();
                if let Some(request) = hub.hand_out() {
                    return request;
                }
                asked.await;
            }
        }
    }

    /// `state_updated`: the later snapshot, once.
    pub(crate) fn updated(self: &Arc<Self>) -> impl Future<Output = Inherited> + Send + 'static {
        let hub = Arc::clone(self);
        async move {
            loop {
                let mut came = pin!(hub.snapshot.notified());
                came.as_mut().enable();
                if let Some(snapshot) = hub.take_snapshot() {
                    return snapshot;
                }
                came.await;
            }
        }
    }

    /// The later snapshot, if it came and was not taken.
    fn take_snapshot(&self) -> Option<Inherited> {
        let mut shared = lock(&self.shared);
        match std::mem::replace(&mut shared.snapshot, Snapshot::Over) {
            Snapshot::Arrived(snapshot) => Some(snapshot),
            other => {
                shared.snapshot = other;
                None
            }
        }
    }

    /// Whether this process stands by or winds down: when a later snapshot may be
    /// given.
    fn winding_down(&self) -> bool {
        (self.winding_down)()
    }

    /// The request queued, now the program's.
    fn hand_out(self: &Arc<Self>) -> Option<StateRequest> {
        let mut shared = lock(&self.shared);
        let giving = shared.giving.as_mut()?;
        if !matches!(giving.stage, Stage::Queued) {
            return None;
        }
        giving.stage = Stage::Handed;
        Some(StateRequest {
            hub: Arc::clone(self),
            id: giving.id,
            successor: giving.successor,
            answered: false,
        })
    }

    /// Whether request `id` is the program's to answer still.
    fn is_handed(&self, id: u64) -> bool {
        let shared = lock(&self.shared);
        (shared.giving.as_ref()).is_some_and(|g| g.id == id && matches!(g.stage, Stage::Handed))
    }

    /// Answers request `id` with no state: `reason`, or none if the program declined.
    fn answer_none(&self, id: u64, reason: Option<String>) {
        let mut shared = lock(&self.shared);
        let handed = (shared.giving.as_ref())
            .is_some_and(|g| g.id == id && matches!(g.stage, Stage::Handed));
        if let (true, Some(post)) = (handed, &self.post) {
            shared.giving = None;
            post.post(ChildMsg::StateNone { reason }, Vec::new());
        }
    }

    /// The program dropped request `id` unanswered.
    fn decline(&self, id: u64) {
        self.answer_none(id, None);
    }

    /// Request `id` could not be answered, for `why`: the new process is told.
    fn refuse(&self, id: u64, why: &Error) {
        let reason = format!(
            "the process it replaces, pid {}, could not give its state: {why}",
            std::process::id()
        );
        self.answer_none(id, Some(capped(reason)));
    }

    /// Sends `prepared` as the answer to request `id`; the outcome's receiver.
    fn send(&self, id: u64, prepared: Prepared) -> Result<watch::Receiver<Option<bool>>, Error> {
        let mut shared = lock(&self.shared);
        let giving =
            (shared.giving.as_mut()).filter(|g| g.id == id && matches!(g.stage, Stage::Handed));
        let (Some(giving), Some(post)) = (giving, &self.post) else {
            return Err(StateProblem::SuccessorGone.into());
        };
        let kept = prepared.post(post.as_ref(), false);
        let (outcome, receiver) = watch::channel(None);
        giving.stage = Stage::Given { kept, outcome };
        Ok(receiver)
    }

    /// Sends `prepared` as the later snapshot of the state given for request `id`.
    fn send_update(&self, id: u64, prepared: Prepared) -> Result<(), Error> {
        let mut shared = lock(&self.shared);
        let Some(post) = self.post.as_ref().filter(|_| !shared.gone) else {
            return Err(StateProblem::SuccessorGone.into());
        };
        let more = prepared.post(post.as_ref(), true);
        // Kept until the outcome, as the first; dropped now if it is known.
        if let Some(Giving {
            stage: Stage::Given { kept, .. },
            ..
        }) = shared.giving.as_mut().filter(|g| g.id == id)
        {
            kept.extend(more);
        }
        Ok(())
    }

    /// A new process asks for this process's state.
    fn wanted_by(&self, successor: u32) {
        let Some(post) = &self.post else {
            return;
        };
        if !self.offered.load(Ordering::SeqCst) {
            // Never offered: a supervisor asks only those that did, but the answer is
            // plain.
            post.post(ChildMsg::StateNone { reason: None }, Vec::new());
            return;
        }
        let mut shared = lock(&self.shared);
        if let Some(earlier) = shared.giving.take() {
            end(earlier, false);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        shared.giving = Some(Giving {
            id,
            successor,
            stage: Stage::Queued,
        });
        drop(shared);
        self.asked.notify_waiters();
    }

    /// The transfer of this process's state is over.
    fn done(&self, committed: bool) {
        let giving = lock(&self.shared).giving.take();
        if let Some(giving) = giving {
            end(giving, committed);
        }
    }

    /// The head of a state (or of the later snapshot), with its file.
    fn head(&self, head: StateHeader, fds: Vec<OwnedFd>, cut: bool) {
        let mut shared = lock(&self.shared);
        let wanted = if head.update {
            matches!(shared.taking, Taking::Done { took: true })
                && matches!(shared.snapshot, Snapshot::Awaited)
        } else {
            matches!(shared.taking, Taking::Waiting { .. })
        };
        if !wanted {
            return;
        }
        if let Some(broken) = shared.receiving.take() {
            let what = "a state began before the one before it had come whole".to_string();
            self.failed(
                &mut shared,
                broken.update,
                StateProblem::Malformed { what }.into(),
            );
            return;
        }
        let progress = Receiving::begin(head, fds, cut);
        self.progress(&mut shared, head.update, progress);
    }

    /// More named fds of the state being received.
    fn named(&self, names: Vec<String>, fds: Vec<OwnedFd>, cut: bool) {
        let mut shared = lock(&self.shared);
        let Some(receiving) = shared.receiving.take() else {
            return;
        };
        let update = receiving.update;
        let progress = receiving.more(names, fds, cut);
        self.progress(&mut shared, update, progress);
    }

    fn progress(&self, shared: &mut Shared, update: bool, progress: Result<Progress, Error>) {
        match progress {
            Ok(Progress::More(receiving)) => shared.receiving = Some(receiving),
            Ok(Progress::Done(inherited)) if update => {
                shared.snapshot = Snapshot::Arrived(inherited);
                self.snapshot.notify_waiters();
            }
            Ok(Progress::Done(inherited)) => complete_take(shared, Ok(Some(inherited))),
            Err(e) => self.failed(shared, update, e),
        }
    }

    /// A state being received cannot be: the program is told why (for the later
    /// snapshot, which no call waits for, the log is).
    fn failed(&self, shared: &mut Shared, update: bool, e: Error) {
        if update {
            shared.snapshot = Snapshot::Over;
            errln!("littleboss: the later snapshot of the state could not be received: {e}");
        } else {
            complete_take(shared, Err(e));
        }
    }

    /// No state comes: `reason`, or none if there is none to give.
    fn no_state(&self, reason: Option<String>) {
        let mut shared = lock(&self.shared);
        let broken = shared.receiving.take();
        if broken.as_ref().is_some_and(|b| b.update) {
            let why = reason.as_deref().unwrap_or("it stopped halfway");
            self.failed(
                &mut shared,
                true,
                StateProblem::NotGiven { reason: why.into() }.into(),
            );
            return;
        }
        let taken = match (reason, broken) {
            (Some(reason), _) => Err(StateProblem::NotGiven { reason }.into()),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(StateProblem::NotGiven {
                reason: "the state stopped before all of it had come".into(),
            }
            .into()),
        };
        complete_take(&mut shared, taken);
    }
}

/// Gives the waiting `take_state` its answer, if one waits.
fn complete_take(shared: &mut Shared, taken: Taken) {
    if !matches!(shared.taking, Taking::Waiting { .. }) {
        return;
    }
    let took = matches!(taken, Ok(Some(_)));
    if let Taking::Waiting { reply, .. } =
        std::mem::replace(&mut shared.taking, Taking::Done { took })
    {
        // A program that stopped waiting leaves it to be dropped: its fds closed.
        let _ = reply.send(taken);
    }
}

/// Drops the state being received for `take_state`, if one is.
fn drop_take_receiving(shared: &mut Shared) {
    if shared.receiving.as_ref().is_some_and(|r| !r.update) {
        shared.receiving = None;
    }
}

/// Ends a request: a state given learns its outcome, and its kept fds are closed; one
/// not answered yet is void (a [`StateRequest`] still held says so when used).
fn end(giving: Giving, committed: bool) {
    if let Stage::Given { kept, outcome } = giving.stage {
        outcome.send_replace(Some(committed));
        drop(kept);
    }
}

/// Gives the state up when a `take_state` future is dropped before its answer.
struct Abandon(Arc<StateTransfer>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.abandon_take();
    }
}
