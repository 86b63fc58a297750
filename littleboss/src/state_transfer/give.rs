//! The old process's side: a request for its state ([`StateRequest`]) answered with a
//! snapshot ([`Given`]), and what goes to the supervisor for it: the head with the
//! sealed file, then the named fds, at most [`STATE_FDS_PER_MESSAGE`] a message. The
//! fds given are sent as duplicates and kept until the outcome.

use std::fmt;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

use super::sealed::Writer;
use super::{StateTransfer, limits, value};
use crate::control::protocol::{ChildMsg, STATE_FDS_PER_MESSAGE, StateHeader};
use crate::error::{Error, StateProblem};
use crate::handoff::Post;

/// A new process's request for this one's state, from
/// [`Context::state_wanted`](crate::Context::state_wanted): answer it once, with
/// [`give`](Self::give) or [`give_value`](Self::give_value), or drop it to give none
/// (the new process starts cold).
///
/// Answer soon: the new process waits for it up to its `state_timeout` (5 s by
/// default), and then starts without it; an answer after that is refused.
pub struct StateRequest {
    pub(super) hub: Arc<StateTransfer>,
    /// Which request of the process's it is.
    pub(super) id: u64,
    pub(super) successor: u32,
    /// Whether it was answered (dropping it then says nothing more).
    pub(super) answered: bool,
}

impl fmt::Debug for StateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateRequest")
            .field("successor_pid", &self.successor)
            .finish_non_exhaustive()
    }
}

impl StateRequest {
    /// The pid of the new process that asks.
    pub fn successor_pid(&self) -> u32 {
        self.successor
    }

    /// Gives `bytes` and the named `fds` to the new process: a snapshot, which this
    /// process keeps serving beside. The bytes are copied, on the calling thread, into
    /// a new sealed file: for a large state (megabytes), call it from
    /// `tokio::task::spawn_blocking`.
    ///
    /// The fds are the new process's to use once the transfer is committed
    /// ([`Given::outcome`] says `true`); until then littleboss keeps those given here
    /// open, and closes them at the outcome. Give duplicates
    /// ([`OwnedFd::try_clone`]) of fds this process goes on using.
    ///
    /// Errors: a state over the limits (more than 4 GiB, more than 1,024 fds, a name
    /// empty, longer than 255 bytes or given twice), which the new process is told
    /// too, with the same words; a new process that is gone (its reload failed, or it
    /// stopped waiting), to which nothing is sent; the file could not be written. On
    /// an error the fds given are closed.
    ///
    /// ```no_run
    /// # async fn f(lb: littleboss::Context, snapshot: std::sync::Arc<Vec<u8>>, upstream: std::os::fd::OwnedFd) -> std::io::Result<()> {
    /// let request = lb.state_wanted().await;
    /// let fds = vec![("upstream".to_string(), upstream.try_clone()?)];
    /// let given = tokio::task::spawn_blocking(move || request.give(&snapshot, fds))
    ///     .await?
    ///     .map_err(std::io::Error::from)?;
    /// if given.outcome().await {
    ///     // The new process serves with it: this one winds down.
    /// }
    /// # Ok(()) }
    /// ```
    pub fn give(mut self, bytes: &[u8], fds: Vec<(String, OwnedFd)>) -> Result<Given, Error> {
        self.answered = true;
        self.answer(|| write_bytes(bytes), fds)
    }

    /// Gives `value`, encoded as format version `version` (4 bytes, little-endian) and
    /// postcard, with the named `fds`: see [`give`](Self::give). The new process reads
    /// it with [`Inherited::take_value`](crate::Inherited::take_value) and the same
    /// version. The value is encoded straight into the state's file, on the calling
    /// thread.
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize)] struct Cache;
    /// # async fn f(lb: littleboss::Context, cache: Cache) {
    /// const FORMAT: u32 = 2;
    /// let request = lb.state_wanted().await;
    /// match request.give_value(FORMAT, &cache, Vec::new()) {
    ///     Ok(given) => { let _committed = given.outcome().await; }
    ///     Err(e) => eprintln!("no state given: {e}"),
    /// }
    /// # }
    /// ```
    pub fn give_value<T: Serialize + ?Sized>(
        mut self,
        version: u32,
        value: &T,
        fds: Vec<(String, OwnedFd)>,
    ) -> Result<Given, Error> {
        self.answered = true;
        self.answer(
            || value::write(version, value).map(|(fd, size)| (Some(fd), size)),
            fds,
        )
    }

    fn answer(
        &self,
        write: impl FnOnce() -> Result<(Option<OwnedFd>, u64), Error>,
        fds: Vec<(String, OwnedFd)>,
    ) -> Result<Given, Error> {
        // Before the copy: nobody may be waiting for it any more.
        if !self.hub.is_handed(self.id) {
            return Err(StateProblem::SuccessorGone.into());
        }
        let prepared = prepare(write, fds).inspect_err(|e| self.hub.refuse(self.id, e))?;
        let outcome = self.hub.send(self.id, prepared)?;
        Ok(Given {
            hub: Arc::clone(&self.hub),
            id: self.id,
            outcome,
            updated: false,
        })
    }
}

impl Drop for StateRequest {
    fn drop(&mut self) {
        if !self.answered {
            self.hub.decline(self.id);
        }
    }
}

/// A state given to a new process ([`StateRequest::give`]), on its way until the
/// reload ends.
pub struct Given {
    hub: Arc<StateTransfer>,
    id: u64,
    outcome: watch::Receiver<Option<bool>>,
    updated: bool,
}

impl fmt::Debug for Given {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Given")
            .field("outcome", &*self.outcome.borrow())
            .field("updated", &self.updated)
            .finish_non_exhaustive()
    }
}

impl Given {
    /// Resolves when the reload ends: `true` when the new process serves with the
    /// state (after its probation, if it has one): the transfer is committed, and what
    /// was given is the new process's; `false` when the reload failed or was rolled
    /// back, the new process gave up waiting, or the supervisor went away: nothing
    /// changed, and this process serves on with its own state. Either way littleboss
    /// closes the fds it kept for the transfer.
    pub fn outcome(self) -> impl Future<Output = bool> + Send + 'static {
        let mut outcome = self.outcome;
        async move {
            match outcome.wait_for(Option::is_some).await {
                Ok(committed) => *committed == Some(true),
                // The channel's reader is gone: so is the supervisor.
                Err(_) => false,
            }
        }
    }

    /// Gives the new process one later snapshot: what this process wrote after the
    /// first one, while it still served. Allowed once, while this process stands by
    /// ([`Context::standby`](crate::Context::standby)) or winds down
    /// ([`Context::lameduck`](crate::Context::lameduck)), when the new process is
    /// ready and serves; it gets the snapshot from
    /// [`Context::state_updated`](crate::Context::state_updated). The bytes are
    /// copied on the calling thread, and the fds kept until the outcome, as with
    /// [`StateRequest::give`].
    ///
    /// Errors: the limits of [`StateRequest::give`], before standby or lameduck, a
    /// second call, a transfer that was not committed.
    ///
    /// ```no_run
    /// # async fn f(lb: littleboss::Context, mut given: littleboss::Given, writes: Vec<u8>) {
    /// lb.lameduck().await;
    /// if let Err(e) = given.update(&writes, Vec::new()) {
    ///     eprintln!("the last writes stay here: {e}");
    /// }
    /// # }
    /// ```
    pub fn update(&mut self, bytes: &[u8], fds: Vec<(String, OwnedFd)>) -> Result<(), Error> {
        if self.updated {
            return Err(StateProblem::UpdatedAlready.into());
        }
        if *self.outcome.borrow() == Some(false) {
            return Err(StateProblem::SuccessorGone.into());
        }
        if !self.hub.winding_down() {
            return Err(StateProblem::UpdateTooEarly.into());
        }
        let prepared = prepare(|| write_bytes(bytes), fds)?;
        self.hub.send_update(self.id, prepared)?;
        self.updated = true;
        Ok(())
    }
}

/// `bytes` in a sealed file (none for an empty state), and their size.
fn write_bytes(bytes: &[u8]) -> Result<(Option<OwnedFd>, u64), Error> {
    let size = bytes.len() as u64;
    limits::check_size(size)?;
    if size == 0 {
        return Ok((None, 0));
    }
    let (fd, size) =
        Writer::holding(bytes).map_err(|e| Error::io("writing the state into its file", e))?;
    Ok((Some(fd), size))
}

/// A state ready to send: its file, its size, its names and the fds to send with
/// them, and the ones given, which are kept until the outcome.
#[derive(Debug)]
pub(super) struct Prepared {
    file: Option<OwnedFd>,
    size: u64,
    names: Vec<String>,
    sent: Vec<OwnedFd>,
    kept: Vec<OwnedFd>,
}

/// Checks the names, writes the file (`write`), and duplicates the fds to send.
fn prepare(
    write: impl FnOnce() -> Result<(Option<OwnedFd>, u64), Error>,
    fds: Vec<(String, OwnedFd)>,
) -> Result<Prepared, Error> {
    limits::check_names(fds.iter().map(|(name, _)| name.as_str()))?;
    let (file, size) = write()?;
    let mut prepared = Prepared {
        file,
        size,
        names: Vec::with_capacity(fds.len()),
        sent: Vec::with_capacity(fds.len()),
        kept: Vec::with_capacity(fds.len()),
    };
    for (name, fd) in fds {
        let copy = fd.try_clone().map_err(|e| {
            Error::io(
                format!("duplicating fd {name:?} of the state to send it"),
                e,
            )
        })?;
        prepared.names.push(name);
        prepared.sent.push(copy);
        prepared.kept.push(fd);
    }
    Ok(prepared)
}

impl Prepared {
    /// Sends the head with the file, then the named fds; the fds kept back.
    pub(super) fn post(self, post: &dyn Post, update: bool) -> Vec<OwnedFd> {
        let head = StateHeader {
            size: self.size,
            fds: u32::try_from(self.names.len()).unwrap_or(u32::MAX),
            from: 0,
            update,
        };
        post.post(ChildMsg::StateGive(head), self.file.into_iter().collect());
        let mut sent = self.sent.into_iter();
        for names in self.names.chunks(STATE_FDS_PER_MESSAGE) {
            let fds = sent.by_ref().take(names.len()).collect();
            post.post(ChildMsg::StateFds(names.to_vec()), fds);
        }
        self.kept
    }
}
