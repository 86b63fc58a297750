//! The messages of the child channel and the control socket, and how they are framed.
//!
//! Every message is `[version: u16 little-endian][postcard body]`. A receiver reads the
//! version first and refuses, naming both sides' versions, any message whose version it
//! does not speak, before it decodes anything else; so a supervisor of an older release
//! refuses a newer child or client clearly instead of misreading it. On the control
//! socket (a stream) each message is preceded by its length as a `u32` little-endian,
//! at most [`MAX_CONTROL_FRAME`]. See `PROTOCOL.md` for the message layouts.
//!
//! A release speaks a range of versions ([`Versions`]): its own and at least the one
//! before, so that a new supervisor runs a child of the previous release (a rollback) and answers
//! its client, and a new client works with a supervisor of the previous release. Each
//! conversation uses the highest version both sides speak. Version 1 refuses every
//! other number, so first contact is always plain version 1: a supervisor puts its
//! range in the child's environment ([`VERSIONS_ENV`](crate::environ::VERSIONS_ENV); absent means 1), and a client
//! opens with a version-1 `Status`, whose `protocol` field is the supervisor's newest.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use littleboss_rules::wait::MAX_WAIT;

use crate::control::history::{History, HistoryV5};
use crate::secret::Secret;
use crate::spec::Network;

/// The newest protocol version this build speaks, on both the channel and the control
/// socket.
pub const PROTOCOL: u16 = 7;

/// The oldest protocol version this build speaks: at least the previous release's
/// (this one keeps 1, which the previous release spoke too).
pub const OLDEST_PROTOCOL: u16 = 1;

/// A range of protocol versions, oldest to newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Versions {
    pub oldest: u16,
    pub newest: u16,
}

impl Versions {
    /// What this build speaks: [`OLDEST_PROTOCOL`] to [`PROTOCOL`], narrowed by
    /// [`TEST_PROTOCOLS_ENV`](crate::environ::TEST_PROTOCOLS_ENV) in a build with test
    /// hooks, if it is set to a range inside that one, so that negotiation and refusal
    /// can run between builds of one release.
    pub(crate) fn ours() -> Versions {
        static OURS: OnceLock<Versions> = OnceLock::new();
        *OURS.get_or_init(|| {
            let built = Versions {
                oldest: OLDEST_PROTOCOL,
                newest: PROTOCOL,
            };
            crate::environ::test_hook(crate::environ::TEST_PROTOCOLS_ENV)
                .and_then(|v| v.to_str())
                .and_then(Versions::parse)
                .filter(|v| built.contains(v.oldest) && built.contains(v.newest))
                .unwrap_or(built)
        })
    }

    /// Only version 1: what a peer that says nothing of its versions speaks.
    pub(crate) const V1: Versions = Versions {
        oldest: 1,
        newest: 1,
    };

    /// `2`, or `1-2`.
    pub(crate) fn parse(text: &str) -> Option<Versions> {
        let (oldest, newest) = match text.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let v = text.trim().parse().ok()?;
                (v, v)
            }
        };
        (oldest <= newest).then_some(Versions { oldest, newest })
    }

    pub(crate) fn contains(self, version: u16) -> bool {
        (self.oldest..=self.newest).contains(&version)
    }

    /// The highest version both speak, if any.
    pub(crate) fn common(self, theirs: Versions) -> Option<u16> {
        let newest = self.newest.min(theirs.newest);
        (newest >= self.oldest.max(theirs.oldest)).then_some(newest)
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.oldest == self.newest {
            write!(f, "{}", self.newest)
        } else {
            write!(f, "{}-{}", self.oldest, self.newest)
        }
    }
}

/// The largest control frame accepted (requests and replies are small).
pub(crate) const MAX_CONTROL_FRAME: usize = 64 * 1024;

/// The most of a text that a child's message quotes (a panic's, or a reason the
/// program gave): it goes in one channel message and in the reason a client prints.
pub(crate) const MAX_TEXT: usize = 4096;

/// `text`, cut at [`MAX_TEXT`] bytes (on a character boundary) with an ellipsis.
pub(crate) fn capped(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// How the error of a [`ChildMsg::Finished`] begins when the program's main panicked:
/// `panicked at src/main.rs:4:5: boom`.
pub(crate) const PANICKED: &str = "panicked at ";

/// Child -> supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChildMsg {
    /// First message: who the child is and how it wants to be treated.
    Hello(ChildHello),
    /// The program called `Context::ready`.
    Ready,
    /// The program's main returned: `Ok`, or the error it printed. A main that
    /// panicked sends an `Err` that starts with [`PANICKED`], then where and what.
    Finished(Result<(), String>),
    /// Protocol 3: the program takes connections of this listener handed in from the
    /// process before ([`SupervisorMsg::Adopt`]).
    Adopts { listener: String },
    /// Protocol 3: idle connections for the serving child, one fd each, in order. The
    /// child keeps its own copy of each until [`SupervisorMsg::Taken`] or
    /// [`SupervisorMsg::Returned`] names it.
    Hand(Vec<Parcel>),
    /// Protocol 3: the program took these handed-in connections (the supervisor's ids).
    Adopted(Vec<u64>),
    /// Protocol 3: these handed-in connections are not taken; the child closed its
    /// copies.
    Declined(Vec<u64>),
    /// Protocol 4: the hello, with what the binary declares of the probation that
    /// follows a reload to it (sent instead of [`ChildMsg::Hello`]).
    HelloProbation(ChildHello, Probation),
    /// Protocol 4, before `Ready`: the program can stand by (stop accepting and wait,
    /// warm) instead of winding down when a new child is on probation.
    CanStandBy,
    /// Protocol 4: the program says it is not well (`Context::unhealthy`); a child on
    /// probation is rolled back for it.
    Unhealthy { reason: String },
    /// Protocol 4: of the responses the HTTP helpers gave during this child's
    /// probation, more than its `probation_5xx` share had a 5xx status; it is rolled
    /// back for it.
    ServesErrors { errors: u64, responses: u64 },
    /// Protocol 5: what the HTTP helpers counted since the child started, per
    /// listener (sent at most every 100 ms while it changes, and at exit).
    Counts(Vec<HttpCounts>),
    /// Protocol 6: the program offers its state to a successor that asks
    /// (`Context::state_wanted` was called): sent once. A child that never sends it
    /// offers none, and a successor's ask is answered "no state" at once.
    OffersState,
    /// Protocol 6, from a new child before `Ready`: it asks the process it replaces for
    /// its state (`Context::take_state`), waiting up to `timeout_ms` for the answer.
    StateAsk { timeout_ms: u64 },
    /// Protocol 6, the answer to [`SupervisorMsg::StateWanted`] (or, with `update`,
    /// the one later snapshot a child in standby or lameduck may give): `size` bytes in
    /// the one fd that comes with it (none if `size` is 0), and `fds` more fds that
    /// follow in [`ChildMsg::StateFds`].
    StateGive(StateHeader),
    /// Protocol 6: the program's named fds of the state being given, one fd each, in
    /// order (at most [`STATE_FDS_PER_MESSAGE`] a message).
    StateFds(Vec<String>),
    /// Protocol 6, the answer to [`SupervisorMsg::StateWanted`]: no state (`None`: the
    /// program declined it), or why it could not be given.
    StateNone { reason: Option<String> },
    /// Protocol 7: idle TLS connections for the serving child, as [`ChildMsg::Hand`]
    /// hands plaintext ones, each with its session.
    HandTls(Vec<TlsParcel>),
}

/// The head of a state given or relayed (protocol 6): how many bytes are in the fd
/// that travels with it and how many named fds follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateHeader {
    /// The state's length in bytes: the size of the sealed file that comes with the
    /// message (none comes for 0).
    pub size: u64,
    /// How many named fds follow, in [`ChildMsg::StateFds`] or
    /// [`SupervisorMsg::StateFds`] messages.
    pub fds: u32,
    /// The pid of the process that gave it (set by the supervisor when it relays: a
    /// child's own is ignored).
    pub from: u32,
    /// Whether this is the one later snapshot of a child in standby or lameduck
    /// (`Context::state_updated`), not the answer to an ask.
    pub update: bool,
}

/// The most bytes a state may hold: 4 GiB (or what a slice can hold, on a 32-bit
/// target).
pub(crate) const MAX_STATE_BYTES: u64 = if (isize::MAX as u64) < (4 << 30) {
    isize::MAX as u64
} else {
    4 << 30
};

/// The most named fds a state may carry.
pub(crate) const MAX_STATE_FDS: usize = 1024;

/// The most named fds one [`ChildMsg::StateFds`] or [`SupervisorMsg::StateFds`]
/// carries (fewer than a packet may: the sealed file goes with the head).
pub(crate) const STATE_FDS_PER_MESSAGE: usize = 100;

/// The longest name of an fd in a state, in bytes.
pub(crate) const MAX_STATE_FD_NAME: usize = 255;

impl ChildMsg {
    /// The oldest protocol version in which this message exists.
    pub(crate) fn since(&self) -> u16 {
        match self {
            ChildMsg::Hello(_) | ChildMsg::Ready | ChildMsg::Finished(_) => 1,
            ChildMsg::Adopts { .. }
            | ChildMsg::Hand(_)
            | ChildMsg::Adopted(_)
            | ChildMsg::Declined(_) => 3,
            ChildMsg::HelloProbation(..)
            | ChildMsg::CanStandBy
            | ChildMsg::Unhealthy { .. }
            | ChildMsg::ServesErrors { .. } => 4,
            ChildMsg::Counts(_) => 5,
            ChildMsg::OffersState
            | ChildMsg::StateAsk { .. }
            | ChildMsg::StateGive(_)
            | ChildMsg::StateFds(_)
            | ChildMsg::StateNone { .. } => 6,
            ChildMsg::HandTls(_) => 7,
        }
    }
}

/// What a binary declares of the probation after a reload to it (protocol 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Probation {
    /// How long the new child is on probation once ready, in ms (0: none).
    pub ms: u64,
    /// The share of 5xx responses, in percent, above which the HTTP helpers call the
    /// new child unhealthy during its probation (0: they do not count).
    pub five_xx_pct: u8,
    /// Whether the old child stands by during the probation (if it can), for a warm
    /// rollback; `false`: it winds down, and a rollback starts the previous binary.
    pub standby: bool,
}

/// The upper bounds of the buckets of `littleboss_http_request_duration_seconds`, in
/// microseconds: 5 ms to 10 s, as Prometheus's client libraries have by default.
pub(crate) const HTTP_DURATION_BOUNDS_US: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// What the HTTP helpers of one listener counted since the child started (protocol 5,
/// [`ChildMsg::Counts`]). Every count only grows, but `open`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HttpCounts {
    pub listener: String,
    /// Responses by status class: `1xx` to `5xx`.
    pub codes: [u64; 5],
    /// The upper bounds of the duration buckets, in microseconds, ascending
    /// ([`HTTP_DURATION_BOUNDS_US`] from this release).
    pub bounds_us: Vec<u64>,
    /// Responses per bucket (not cumulative): one per bound, then one above them all.
    pub buckets: Vec<u64>,
    /// The responses' durations added up, in microseconds.
    pub sum_us: u64,
    /// Connections open now.
    pub open: u64,
}

/// One connection on its way from a child in lameduck to the serving one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Parcel {
    /// The sender's id for it: the child's own in [`ChildMsg::Hand`], the supervisor's
    /// in [`SupervisorMsg::Adopt`].
    pub id: u64,
    /// The listener it was accepted on.
    pub listener: String,
    /// What was read from it and not parsed yet, at most [`MAX_CARRIED`] bytes.
    pub bytes: Vec<u8>,
}

/// A TLS connection on its way (protocol 7): the connection as a [`Parcel`] (its
/// `bytes` are plaintext the session opened and nobody read yet), and its session as
/// the HTTP helpers encode it (its keys, their sequence numbers, what it read of an
/// unfinished record). The supervisor relays the session as it came and never reads
/// it: its machine sees the parcel only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TlsParcel {
    pub parcel: Parcel,
    pub session: Secret,
}

/// Something that goes in a message with an fd: a parcel, plain or TLS.
pub(crate) trait Carried {
    /// About how many bytes it takes in a message, at most.
    fn carried(&self) -> usize;
}

impl Carried for Parcel {
    fn carried(&self) -> usize {
        self.bytes.len() + self.listener.len() + 24
    }
}

impl Carried for TlsParcel {
    fn carried(&self) -> usize {
        self.parcel.carried() + self.session.len() + 4
    }
}

/// About how many bytes an id takes in a message, at most.
pub(crate) const ID_BYTES: usize = 10;

/// Splits `parcels`, each with its fd, into runs that each fit in one message: at most
/// `max_fds` fds and `max_bytes` bytes of parcels (a parcel larger than that alone goes
/// alone).
pub(crate) fn parcel_batches<P: Carried, F>(
    parcels: Vec<(P, F)>,
    max_fds: usize,
    max_bytes: usize,
) -> Vec<Vec<(P, F)>> {
    let mut batches: Vec<Vec<(P, F)>> = Vec::new();
    let mut bytes = 0;
    for (parcel, fd) in parcels {
        let size = parcel.carried();
        match batches.last_mut() {
            Some(last) if last.len() < max_fds && bytes + size <= max_bytes => {
                bytes += size;
                last.push((parcel, fd));
            }
            _ => {
                bytes = size;
                batches.push(vec![(parcel, fd)]);
            }
        }
    }
    batches
}

/// `ids` as messages made by `make`, at most `per` ids each.
fn split_ids<M>(ids: &[u64], per: usize, make: fn(Vec<u64>) -> M) -> Vec<M> {
    ids.chunks(per).map(|c| make(c.to_vec())).collect()
}

impl ChildMsg {
    /// This message as messages that each fit in `max_bytes`: a long list of ids (of
    /// connections adopted or declined) in several; any other message as it is.
    pub(crate) fn in_batches(self, max_bytes: usize) -> Vec<ChildMsg> {
        let per = (max_bytes / ID_BYTES).max(1);
        let split = |ids: Vec<u64>, make| split_ids(&ids, per, make);
        match self {
            ChildMsg::Adopted(ids) if ids.len() > per => split(ids, ChildMsg::Adopted),
            ChildMsg::Declined(ids) if ids.len() > per => split(ids, ChildMsg::Declined),
            other => vec![other],
        }
    }
}

impl SupervisorMsg {
    /// This message as messages that each fit in `max_bytes`: a long list of ids (of
    /// connections taken, given back or recalled) in several; any other message as
    /// it is.
    pub(crate) fn in_batches(self, max_bytes: usize) -> Vec<SupervisorMsg> {
        let per = (max_bytes / ID_BYTES).max(1);
        let split = |ids: Vec<u64>, make| split_ids(&ids, per, make);
        match self {
            SupervisorMsg::Taken(ids) if ids.len() > per => split(ids, SupervisorMsg::Taken),
            SupervisorMsg::Returned(ids) if ids.len() > per => split(ids, SupervisorMsg::Returned),
            SupervisorMsg::Recall(ids) if ids.len() > per => split(ids, SupervisorMsg::Recall),
            other => vec![other],
        }
    }
}

/// The most bytes read and not parsed yet that a connection carries when it is handed
/// over; one that holds more drains where it is.
pub(crate) const MAX_CARRIED: usize = 16 * 1024;

/// The protocol version that moves connections between processes.
pub(crate) const MOVES_SINCE: u16 = 3;

/// The protocol version that moves TLS connections too ([`TlsParcel`]).
pub(crate) const TLS_MOVES_SINCE: u16 = 7;

/// The layout of the sessions of [`TlsParcel`]s this build makes and reads: their first
/// byte. A child declines a TLS connection whose session is of another layout.
pub(crate) const TLS_SESSION_LAYOUT: u8 = 1;

/// The most bytes a TLS connection carries when it is handed over, plaintext and
/// session together (an unfinished record alone may be 16,645 bytes); one that holds
/// more winds down where it is.
pub(crate) const MAX_TLS_CARRIED: usize = 40 * 1024;

/// What a child says of itself. The new binary's own options govern its readiness and
/// lameduck, so a reload may change them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChildHello {
    pub name: String,
    pub pid: u32,
    pub calls_ready: bool,
    pub settle_ms: u64,
    pub ready_timeout_ms: u64,
    pub lameduck_ms: u64,
}

/// Supervisor -> child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SupervisorMsg {
    /// The answer to a good hello; the fds of the listeners that are on travel with it,
    /// in the order of `listeners`.
    Welcome { listeners: Vec<ListenerInfo> },
    /// The answer to a hello the supervisor cannot accept; the child exits.
    Refused { reason: String },
    /// Wind down: stop accepting, finish in-flight work, exit.
    Lameduck,
    /// Protocol 3, before `Lameduck`: the serving child takes idle connections of these
    /// listeners; hand them over ([`ChildMsg::Hand`]) instead of closing them.
    Successor { adopts: Vec<String> },
    /// Protocol 3: connections handed in, one fd each, in order.
    Adopt(Vec<Parcel>),
    /// Protocol 3: the serving child took these (the child's own ids): close the copies.
    Taken(Vec<u64>),
    /// Protocol 3: these go back (the child's own ids): serve them to the end.
    Returned(Vec<u64>),
    /// Protocol 3: the connections handed in with these ids (the supervisor's) that are
    /// not taken yet are not to be: decline them.
    Recall(Vec<u64>),
    /// Protocol 4, to a child that can stand by: a new child is on probation. Stop
    /// accepting and hand connections over as at lameduck, but do not exit.
    Standby,
    /// Protocol 4, to a child standing by: the new child failed its probation; accept
    /// again (connections handed in follow).
    Resume,
    /// Protocol 4, to a new child once it is ready: it is on probation for `ms` (its
    /// HTTP helpers count its 5xx responses meanwhile).
    OnProbation { ms: u64 },
    /// Protocol 6, to a child that offers its state: the new child of pid `successor`
    /// asks for it. Answered by [`ChildMsg::StateGive`] or [`ChildMsg::StateNone`].
    StateWanted { successor: u32 },
    /// Protocol 6, to the child that asked (or, with `update`, to the one that was
    /// given a state and is ready): the state, its sealed file with it (none if `size`
    /// is 0); `fds` named fds follow in [`SupervisorMsg::StateFds`].
    State(StateHeader),
    /// Protocol 6: named fds of the state being relayed, one fd each, in order.
    StateFds(Vec<String>),
    /// Protocol 6, to the child that asked: there is no state (`None`: no process to
    /// give one, or it offers none), or why none came (a timeout, a failure).
    NoState { reason: Option<String> },
    /// Protocol 6, to a child that gave its state: the transfer is over. `committed`:
    /// the successor became the serving child, and what was given is its own now;
    /// otherwise (the reload failed or was rolled back, or the successor gave up)
    /// nothing changed.
    StateDone { committed: bool },
    /// Protocol 7: TLS connections handed in, one fd each, in order, as
    /// [`SupervisorMsg::Adopt`] hands plaintext ones (the same ids and answers).
    AdoptTls(Vec<TlsParcel>),
}

impl SupervisorMsg {
    /// The oldest protocol version in which this message exists.
    pub(crate) fn since(&self) -> u16 {
        match self {
            SupervisorMsg::Welcome { .. }
            | SupervisorMsg::Refused { .. }
            | SupervisorMsg::Lameduck => 1,
            SupervisorMsg::Successor { .. }
            | SupervisorMsg::Adopt(_)
            | SupervisorMsg::Taken(_)
            | SupervisorMsg::Returned(_)
            | SupervisorMsg::Recall(_) => 3,
            SupervisorMsg::Standby | SupervisorMsg::Resume | SupervisorMsg::OnProbation { .. } => 4,
            SupervisorMsg::StateWanted { .. }
            | SupervisorMsg::State(_)
            | SupervisorMsg::StateFds(_)
            | SupervisorMsg::NoState { .. }
            | SupervisorMsg::StateDone { .. } => 6,
            SupervisorMsg::AdoptTls(_) => 7,
        }
    }

    /// The message as a child whose hello was at `spoken` reads it (a child that has
    /// not said hello yet is spoken to in this build's oldest version), or `None` if
    /// that version has no such message: a child of an older protocol is not told what
    /// it would not understand (it drains instead of handing connections over). The
    /// one place where the supervisor's messages are gated by version.
    pub(crate) fn encode_for(&self, spoken: Option<u16>) -> Option<Vec<u8>> {
        let at = spoken.unwrap_or(Versions::ours().oldest);
        (self.since() <= at).then(|| encode_at(at, self))
    }
}

/// One listener as the child receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ListenerInfo {
    pub name: String,
    pub network: Network,
    /// The bound address (`127.0.0.1:41234`), or `None` if the listener is off (then no
    /// fd travels for it).
    pub addr: Option<String>,
}

/// Client -> supervisor, on the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Request {
    Status,
    Stop,
    Reload(ReloadRequest),
    /// Protocol 2: reload the child to the binary, then re-execute the supervisor as it.
    Upgrade(ReloadRequest),
    /// Protocol 4: end the probation under way as passed.
    Promote,
    /// Protocol 4: end the probation under way as failed: back to the old child.
    Rollback,
    /// Protocol 5: the journal's last events.
    History,
    /// Protocol 5: the metrics, in the Prometheus text format.
    Metrics,
}

impl Request {
    /// The oldest protocol version in which this request exists.
    pub(crate) fn since(&self) -> u16 {
        match self {
            Request::Status | Request::Stop | Request::Reload(_) => 1,
            Request::Upgrade(_) => 2,
            Request::Promote | Request::Rollback => 4,
            Request::History | Request::Metrics => 5,
        }
    }

    /// How long a client waits for the answer, from the times the supervisor gave
    /// (`status`, of protocol 2) or else the client binary's `own`.
    pub(crate) fn deadline(&self, status: Option<&Status>, own: &Waits) -> Deadline {
        let ms = |ms: u64| Some(Duration::from_millis(ms)).filter(|d| !d.is_zero());
        let lameduck = status
            .and_then(|s| ms(s.lameduck_ms))
            .unwrap_or(own.lameduck);
        let hello = status
            .and_then(|s| ms(s.hello_timeout_ms))
            .unwrap_or(MAX_WAIT);
        let reload = PREPARE + hello + own.ready + MARGIN;
        // The verdict comes at the end of the new child's probation (its binary is the
        // client's own), or of a cold rollback's start.
        let reload = reload + own.probation;
        match self {
            Request::Status | Request::History | Request::Metrics => Deadline::STATUS,
            // The children wind down, then whatever they left behind does.
            Request::Stop => Deadline {
                within: lameduck * 2 + MARGIN,
                waiting: "waiting for the children to wind down",
            },
            Request::Reload(_) => Deadline {
                within: reload,
                waiting: "waiting for the new child to be ready",
            },
            // Two probes of the binary (each bounded by 10 s), the old child's wind-down
            // (the exec waits until its connections have moved), then the exec.
            Request::Upgrade(_) => Deadline {
                within: reload + PREPARE * 2 + lameduck + MARGIN,
                waiting: "waiting for the new child to be ready, then for the supervisor to re-execute",
            },
            Request::Promote => Deadline {
                within: STATUS_TIMEOUT,
                waiting: "waiting for the probation to end",
            },
            // A cold rollback waits for the previous binary to be ready.
            Request::Rollback => Deadline {
                within: PREPARE + hello + own.ready + MARGIN,
                waiting: "waiting for the old child to serve again",
            },
        }
    }
}

/// A client binary's own times: what a reload to it waits for, and a stop's fallback
/// when the supervisor does not say (protocol 1).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Waits {
    /// Its lameduck time.
    pub lameduck: Duration,
    /// How long its child may take to be ready: its ready timeout, or its settle time.
    pub ready: Duration,
    /// Its probation.
    pub probation: Duration,
}

/// How long an answer may take, and what the client waits for meanwhile
/// ([`Request::deadline`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    pub within: Duration,
    pub waiting: &'static str,
}

/// How long `status` (and each first contact) waits for an answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reload's binary may take to open and its listeners to bind (the
/// supervisor's own bound), and a margin for the supervisor's own work.
const PREPARE: Duration = Duration::from_secs(10);
const MARGIN: Duration = Duration::from_secs(10);

impl Deadline {
    /// A `status`'s, and each first contact's.
    pub(crate) const STATUS: Deadline = Deadline {
        within: STATUS_TIMEOUT,
        waiting: "waiting for its status",
    };
}

/// What `--littleboss=reload` (and `upgrade`) asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReloadRequest {
    /// The executable to run (the binary that ran the reload command).
    pub path: Vec<u8>,
    /// New arguments (program name first), or `None` to keep the running ones.
    pub args: Option<Vec<Vec<u8>>>,
    /// Listener addresses to bind anew: `(name, address)`, empty address for off.
    pub listeners: Vec<(String, String)>,
}

/// Supervisor -> client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Response {
    Status(Box<Status>),
    Stopped {
        code: i32,
    },
    Reloaded {
        old_pid: Option<u32>,
        new_pid: u32,
        ms: u64,
    },
    /// The request was carried out in part or not at all; the text says why.
    Failed {
        reason: String,
    },
    /// Protocol 2: the child and the supervisor run the new binary.
    Upgraded(Upgraded),
    /// Protocol 4, before the final answer to a reload or an upgrade: the new child is
    /// ready and on probation until `ends_ms` from now.
    OnProbation {
        old_pid: Option<u32>,
        new_pid: u32,
        ms: u64,
        ends_ms: u64,
    },
    /// Protocol 4: the answer to `Promote`: the new child passed its probation after
    /// `after_ms`.
    Promoted {
        pid: u32,
        after_ms: u64,
    },
    /// Protocol 4: the answer to `Rollback`: this child serves again.
    RolledBack {
        pid: u32,
    },
    /// Protocol 4: the request was refused, as it cannot be carried out now (a
    /// probation is under way, or none is); the text says why. A client of protocol 3
    /// or before is sent [`Response::Failed`].
    Refused {
        reason: String,
    },
    /// Protocol 5: the answer to `History`.
    History(History),
    /// Protocol 5: the answer to `Metrics`: the Prometheus text format.
    Metrics {
        text: String,
    },
}

impl Response {
    /// Whether it comes before the answer to a request (which follows it on the same
    /// connection) rather than being the answer.
    pub(crate) fn is_interim(&self) -> bool {
        matches!(self, Response::OnProbation { .. })
    }

    /// What a client of `version` is answered instead of an interim response it does
    /// not know, if that differs: a reload on probation is `Reloaded` to a client of
    /// protocol 3 or before, as when its new child was ready.
    pub(crate) fn for_version(&self, version: u16) -> Option<Response> {
        match self {
            Response::OnProbation {
                old_pid,
                new_pid,
                ms,
                ..
            } if version < INTERIM_SINCE => Some(Response::Reloaded {
                old_pid: *old_pid,
                new_pid: *new_pid,
                ms: *ms,
            }),
            _ => None,
        }
    }
}

/// `3.2 s`, `30 s`: how the lines of both sides say a probation's times, which the
/// protocol carries in milliseconds (a tenth of a second below ten seconds, whole
/// seconds above).
pub(crate) fn seconds(ms: u64) -> String {
    if ms % 1000 == 0 || ms >= 10_000 {
        format!("{} s", (ms + 500) / 1000)
    } else {
        format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
    }
}

/// The protocol version from which a client is sent interim responses.
pub(crate) const INTERIM_SINCE: u16 = 4;

/// What an upgrade did: the child's reload, then the supervisor's own exec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Upgraded {
    pub old_pid: Option<u32>,
    pub new_pid: u32,
    pub ms: u64,
    pub supervisor_pid: u32,
    /// The executable the supervisor runs now.
    pub path: String,
    /// The newest protocol of the supervisor before and after.
    pub from: u16,
    pub to: u16,
}

/// The responses as protocols 4 and 5 lay them out: their `Status` has no
/// `last_reload_state_bytes`, and their `History` no state taken by an event's new
/// child (protocol 4 never sends a `History` or `Metrics`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum ResponseV4 {
    Status(Box<StatusV4>),
    Stopped {
        code: i32,
    },
    Reloaded {
        old_pid: Option<u32>,
        new_pid: u32,
        ms: u64,
    },
    Failed {
        reason: String,
    },
    Upgraded(Upgraded),
    OnProbation {
        old_pid: Option<u32>,
        new_pid: u32,
        ms: u64,
        ends_ms: u64,
    },
    Promoted {
        pid: u32,
        after_ms: u64,
    },
    RolledBack {
        pid: u32,
    },
    Refused {
        reason: String,
    },
    History(HistoryV5),
    Metrics {
        text: String,
    },
}

impl From<Response> for ResponseV4 {
    fn from(response: Response) -> ResponseV4 {
        match response {
            Response::Status(status) => ResponseV4::Status(Box::new(StatusV4::from(*status))),
            Response::Stopped { code } => ResponseV4::Stopped { code },
            Response::Reloaded {
                old_pid,
                new_pid,
                ms,
            } => ResponseV4::Reloaded {
                old_pid,
                new_pid,
                ms,
            },
            Response::Failed { reason } => ResponseV4::Failed { reason },
            Response::Upgraded(upgraded) => ResponseV4::Upgraded(upgraded),
            Response::OnProbation {
                old_pid,
                new_pid,
                ms,
                ends_ms,
            } => ResponseV4::OnProbation {
                old_pid,
                new_pid,
                ms,
                ends_ms,
            },
            Response::Promoted { pid, after_ms } => ResponseV4::Promoted { pid, after_ms },
            Response::RolledBack { pid } => ResponseV4::RolledBack { pid },
            Response::Refused { reason } => ResponseV4::Refused { reason },
            Response::History(history) => ResponseV4::History(HistoryV5::from(history)),
            Response::Metrics { text } => ResponseV4::Metrics { text },
        }
    }
}

impl From<ResponseV4> for Response {
    fn from(response: ResponseV4) -> Response {
        match response {
            ResponseV4::Status(status) => Response::Status(Box::new(Status::from(*status))),
            ResponseV4::Stopped { code } => Response::Stopped { code },
            ResponseV4::Reloaded {
                old_pid,
                new_pid,
                ms,
            } => Response::Reloaded {
                old_pid,
                new_pid,
                ms,
            },
            ResponseV4::Failed { reason } => Response::Failed { reason },
            ResponseV4::Upgraded(upgraded) => Response::Upgraded(upgraded),
            ResponseV4::OnProbation {
                old_pid,
                new_pid,
                ms,
                ends_ms,
            } => Response::OnProbation {
                old_pid,
                new_pid,
                ms,
                ends_ms,
            },
            ResponseV4::Promoted { pid, after_ms } => Response::Promoted { pid, after_ms },
            ResponseV4::RolledBack { pid } => Response::RolledBack { pid },
            ResponseV4::Refused { reason } => Response::Refused { reason },
            ResponseV4::History(history) => Response::History(History::from(history)),
            ResponseV4::Metrics { text } => Response::Metrics { text },
        }
    }
}

/// [`Status`] as protocols 4 and 5 lay it out: without `last_reload_state_bytes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StatusV4 {
    name: String,
    protocol: u16,
    protocols: [u16; 2],
    supervisor_pid: u32,
    supervisor_started: String,
    supervisor_path: Option<String>,
    upgrades: u64,
    lameduck_ms: u64,
    hello_timeout_ms: u64,
    child_pid: Option<u32>,
    child_path: Option<String>,
    child_args: Vec<String>,
    child_started: Option<String>,
    previous_path: Option<String>,
    reloads: u64,
    failures: u64,
    restarts: u64,
    state: String,
    listeners: BTreeMap<String, String>,
    standby_pid: Option<u32>,
    probation_ends: Option<String>,
}

impl From<Status> for StatusV4 {
    fn from(s: Status) -> StatusV4 {
        StatusV4 {
            name: s.name,
            protocol: s.protocol,
            protocols: s.protocols,
            supervisor_pid: s.supervisor_pid,
            supervisor_started: s.supervisor_started,
            supervisor_path: s.supervisor_path,
            upgrades: s.upgrades,
            lameduck_ms: s.lameduck_ms,
            hello_timeout_ms: s.hello_timeout_ms,
            child_pid: s.child_pid,
            child_path: s.child_path,
            child_args: s.child_args,
            child_started: s.child_started,
            previous_path: s.previous_path,
            reloads: s.reloads,
            failures: s.failures,
            restarts: s.restarts,
            state: s.state,
            listeners: s.listeners,
            standby_pid: s.standby_pid,
            probation_ends: s.probation_ends,
        }
    }
}

impl From<StatusV4> for Status {
    /// A supervisor of protocol 4 or 5 has no state transfer.
    fn from(s: StatusV4) -> Status {
        Status {
            name: s.name,
            protocol: s.protocol,
            protocols: s.protocols,
            supervisor_pid: s.supervisor_pid,
            supervisor_started: s.supervisor_started,
            supervisor_path: s.supervisor_path,
            upgrades: s.upgrades,
            lameduck_ms: s.lameduck_ms,
            hello_timeout_ms: s.hello_timeout_ms,
            child_pid: s.child_pid,
            child_path: s.child_path,
            child_args: s.child_args,
            child_started: s.child_started,
            previous_path: s.previous_path,
            reloads: s.reloads,
            failures: s.failures,
            restarts: s.restarts,
            state: s.state,
            listeners: s.listeners,
            standby_pid: s.standby_pid,
            probation_ends: s.probation_ends,
            last_reload_state_bytes: None,
        }
    }
}

/// The responses as protocols 2 and 3 lay them out (their `Status` has no probation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum ResponseV2 {
    Status(Box<StatusV2>),
    Stopped {
        code: i32,
    },
    Reloaded {
        old_pid: Option<u32>,
        new_pid: u32,
        ms: u64,
    },
    Failed {
        reason: String,
    },
    Upgraded(Upgraded),
}

/// [`Status`] as protocols 2 and 3 lay it out: without `standby_pid` and
/// `probation_ends`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StatusV2 {
    name: String,
    protocol: u16,
    protocols: [u16; 2],
    supervisor_pid: u32,
    supervisor_started: String,
    supervisor_path: Option<String>,
    upgrades: u64,
    lameduck_ms: u64,
    hello_timeout_ms: u64,
    child_pid: Option<u32>,
    child_path: Option<String>,
    child_args: Vec<String>,
    child_started: Option<String>,
    previous_path: Option<String>,
    reloads: u64,
    failures: u64,
    restarts: u64,
    state: String,
    listeners: BTreeMap<String, String>,
}

impl From<Status> for StatusV2 {
    fn from(s: Status) -> StatusV2 {
        StatusV2 {
            name: s.name,
            protocol: s.protocol,
            protocols: s.protocols,
            supervisor_pid: s.supervisor_pid,
            supervisor_started: s.supervisor_started,
            supervisor_path: s.supervisor_path,
            upgrades: s.upgrades,
            lameduck_ms: s.lameduck_ms,
            hello_timeout_ms: s.hello_timeout_ms,
            child_pid: s.child_pid,
            child_path: s.child_path,
            child_args: s.child_args,
            child_started: s.child_started,
            previous_path: s.previous_path,
            reloads: s.reloads,
            failures: s.failures,
            restarts: s.restarts,
            state: s.state,
            listeners: s.listeners,
        }
    }
}

impl From<StatusV2> for Status {
    /// A supervisor of protocol 2 or 3 has no probation.
    fn from(s: StatusV2) -> Status {
        Status {
            name: s.name,
            protocol: s.protocol,
            protocols: s.protocols,
            supervisor_pid: s.supervisor_pid,
            supervisor_started: s.supervisor_started,
            supervisor_path: s.supervisor_path,
            upgrades: s.upgrades,
            lameduck_ms: s.lameduck_ms,
            hello_timeout_ms: s.hello_timeout_ms,
            child_pid: s.child_pid,
            child_path: s.child_path,
            child_args: s.child_args,
            child_started: s.child_started,
            previous_path: s.previous_path,
            reloads: s.reloads,
            failures: s.failures,
            restarts: s.restarts,
            state: s.state,
            listeners: s.listeners,
            standby_pid: None,
            probation_ends: None,
            last_reload_state_bytes: None,
        }
    }
}

/// The responses as protocol 1 lays them out (its `Status` has fewer fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum ResponseV1 {
    Status(Box<StatusV1>),
    Stopped {
        code: i32,
    },
    Reloaded {
        old_pid: Option<u32>,
        new_pid: u32,
        ms: u64,
    },
    Failed {
        reason: String,
    },
}

/// [`Status`] as protocol 1 lays it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StatusV1 {
    name: String,
    protocol: u16,
    supervisor_pid: u32,
    supervisor_started: String,
    child_pid: Option<u32>,
    child_path: Option<String>,
    child_args: Vec<String>,
    child_started: Option<String>,
    previous_path: Option<String>,
    reloads: u64,
    failures: u64,
    restarts: u64,
    state: String,
    listeners: BTreeMap<String, String>,
}

impl From<Status> for StatusV1 {
    fn from(s: Status) -> StatusV1 {
        StatusV1 {
            name: s.name,
            protocol: s.protocol,
            supervisor_pid: s.supervisor_pid,
            supervisor_started: s.supervisor_started,
            child_pid: s.child_pid,
            child_path: s.child_path,
            child_args: s.child_args,
            child_started: s.child_started,
            previous_path: s.previous_path,
            reloads: s.reloads,
            failures: s.failures,
            restarts: s.restarts,
            state: s.state,
            listeners: s.listeners,
        }
    }
}

impl From<StatusV1> for Status {
    /// A protocol-1 supervisor says only its newest version, which is then its range,
    /// and nothing of its own executable or upgrades.
    fn from(s: StatusV1) -> Status {
        Status {
            name: s.name,
            protocol: s.protocol,
            protocols: [s.protocol, s.protocol],
            supervisor_pid: s.supervisor_pid,
            supervisor_started: s.supervisor_started,
            supervisor_path: None,
            upgrades: 0,
            lameduck_ms: 0,
            hello_timeout_ms: 0,
            child_pid: s.child_pid,
            child_path: s.child_path,
            child_args: s.child_args,
            child_started: s.child_started,
            previous_path: s.previous_path,
            reloads: s.reloads,
            failures: s.failures,
            restarts: s.restarts,
            state: s.state,
            listeners: s.listeners,
            standby_pid: None,
            probation_ends: None,
            last_reload_state_bytes: None,
        }
    }
}

/// `response` as protocol `version` lays it out.
pub(crate) fn encode_response(version: u16, response: &Response) -> Vec<u8> {
    if version >= 6 {
        return encode_at(version, response);
    }
    if version >= 5 {
        return encode_at(version, &ResponseV4::from(response.clone()));
    }
    if let Response::History(_) | Response::Metrics { .. } = response {
        // Never asked for below protocol 5 (the requests do not exist there), but if
        // one were: what an older client can read.
        let reason = "the journal and the metrics need protocol 5".to_string();
        return encode_response(version, &Response::Failed { reason });
    }
    if version >= 4 {
        return encode_at(version, &ResponseV4::from(response.clone()));
    }
    if version >= 2 {
        let v2 = match response.clone() {
            Response::Status(status) => ResponseV2::Status(Box::new(StatusV2::from(*status))),
            Response::Stopped { code } => ResponseV2::Stopped { code },
            Response::Reloaded {
                old_pid,
                new_pid,
                ms,
            } => ResponseV2::Reloaded {
                old_pid,
                new_pid,
                ms,
            },
            Response::Failed { reason } => ResponseV2::Failed { reason },
            Response::Upgraded(upgraded) => ResponseV2::Upgraded(upgraded),
            Response::Refused { reason } => ResponseV2::Failed { reason },
            // Never sent below protocol 4 (the supervisor gates them), but if one were:
            // what a client of 2 or 3 can read.
            Response::OnProbation { .. }
            | Response::Promoted { .. }
            | Response::RolledBack { .. } => ResponseV2::Failed {
                reason: "probation needs protocol 4".to_string(),
            },
            // Answered above.
            Response::History(_) | Response::Metrics { .. } => ResponseV2::Failed {
                reason: String::new(),
            },
        };
        return encode_at(version, &v2);
    }
    let v1 = match response.clone() {
        Response::Status(status) => ResponseV1::Status(Box::new(StatusV1::from(*status))),
        Response::Stopped { code } => ResponseV1::Stopped { code },
        Response::Reloaded {
            old_pid,
            new_pid,
            ms,
        } => ResponseV1::Reloaded {
            old_pid,
            new_pid,
            ms,
        },
        Response::Failed { reason } | Response::Refused { reason } => ResponseV1::Failed { reason },
        // Never asked for at version 1 (the request does not exist there).
        Response::Upgraded(_) => ResponseV1::Failed {
            reason: "an upgrade needs protocol 2".to_string(),
        },
        Response::OnProbation { .. } | Response::Promoted { .. } | Response::RolledBack { .. } => {
            ResponseV1::Failed {
                reason: "probation needs protocol 4".to_string(),
            }
        }
        // Answered above.
        Response::History(_) | Response::Metrics { .. } => ResponseV1::Failed {
            reason: String::new(),
        },
    };
    encode_at(version, &v1)
}

/// A response of any version this build speaks.
#[cfg(test)]
pub(crate) fn decode_response(bytes: &[u8]) -> Result<Response, DecodeError> {
    decode_any_response(bytes).map(|(_, response)| response)
}

/// A response of any version this build speaks, and its version.
pub(crate) fn decode_any_response(bytes: &[u8]) -> Result<(u16, Response), DecodeError> {
    let (version, _) = peek_version(bytes, Versions::ours())?;
    if version >= 6 {
        return decode::<Response>(bytes, Versions::ours());
    }
    if version >= 4 {
        let (_, v4) = decode::<ResponseV4>(bytes, Versions::ours())?;
        return Ok((version, Response::from(v4)));
    }
    if version >= 2 {
        let (_, v2) = decode::<ResponseV2>(bytes, Versions::ours())?;
        let response = match v2 {
            ResponseV2::Status(status) => Response::Status(Box::new(Status::from(*status))),
            ResponseV2::Stopped { code } => Response::Stopped { code },
            ResponseV2::Reloaded {
                old_pid,
                new_pid,
                ms,
            } => Response::Reloaded {
                old_pid,
                new_pid,
                ms,
            },
            ResponseV2::Failed { reason } => Response::Failed { reason },
            ResponseV2::Upgraded(upgraded) => Response::Upgraded(upgraded),
        };
        return Ok((version, response));
    }
    let (_, v1) = decode::<ResponseV1>(bytes, Versions::ours())?;
    Ok((
        version,
        match v1 {
            ResponseV1::Status(status) => Response::Status(Box::new(Status::from(*status))),
            ResponseV1::Stopped { code } => Response::Stopped { code },
            ResponseV1::Reloaded {
                old_pid,
                new_pid,
                ms,
            } => Response::Reloaded {
                old_pid,
                new_pid,
                ms,
            },
            ResponseV1::Failed { reason } => Response::Failed { reason },
        },
    ))
}

/// The supervisor's state as `status` and `status-json` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// The service name.
    pub name: String,
    /// The newest protocol version the supervisor speaks.
    pub protocol: u16,
    /// The versions the supervisor speaks, oldest and newest (from a supervisor of
    /// protocol 1, `[1, 1]`).
    pub protocols: [u16; 2],
    /// The supervisor's pid (it never changes, not even when it upgrades itself).
    pub supervisor_pid: u32,
    /// When the supervisor started, RFC 3339 UTC.
    pub supervisor_started: String,
    /// The executable the supervisor runs (`None` from a supervisor of protocol 1).
    pub supervisor_path: Option<String>,
    /// Times the supervisor re-executed itself as a new binary (`--littleboss=upgrade`).
    pub upgrades: u64,
    /// The longest lameduck time its children declared, in ms: how long a stop waits
    /// for them (0 from a supervisor of protocol 1, which does not say).
    pub lameduck_ms: u64,
    /// How long a new child has to say hello, in ms (0 from protocol 1).
    pub hello_timeout_ms: u64,
    /// The serving child's pid, if one is running.
    pub child_pid: Option<u32>,
    /// The serving child's executable.
    pub child_path: Option<String>,
    /// The serving child's arguments, program name first.
    pub child_args: Vec<String>,
    /// When the serving child started, RFC 3339 UTC.
    pub child_started: Option<String>,
    /// The binary a failed reload falls back to, if any.
    pub previous_path: Option<String>,
    /// Reloads that succeeded.
    pub reloads: u64,
    /// Children that failed (before ready, or exiting on their own with an error), and
    /// reloads whose binary could not be opened or started. A reload refused for its
    /// listener flags (a busy address, say) started nothing and is not counted.
    pub failures: u64,
    /// Times the supervisor started a child again by itself (persist or fallback).
    pub restarts: u64,
    /// `starting` (the first child, or one started again, is not ready yet),
    /// `running`, `reloading`, `probation` (a reloaded child is ready and on
    /// probation), `upgrading` (a reload, then the supervisor's own re-execution),
    /// `stopping`, or `idle` (dev mode: no child serves until the next build lands).
    pub state: String,
    /// Listener name -> `NETWORK:ADDRESS` as bound (`off` if it is off).
    pub listeners: BTreeMap<String, String>,
    /// During a probation, the old child standing by for a warm rollback (`None`
    /// otherwise, and from a supervisor of protocol 3 or before).
    pub standby_pid: Option<u32>,
    /// When the probation under way ends, RFC 3339 UTC (`None` if none is).
    pub probation_ends: Option<String>,
    /// The bytes of state the serving child took from the process it replaced, at the
    /// reload that made it serve (state transfer). `None` if it took none: it was the
    /// first child, or one started again, or no state was given, or the transfer did
    /// not complete; and from a supervisor of protocol 5 or before.
    pub last_reload_state_bytes: Option<u64>,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("message of {0} bytes has no version")]
    Short(usize),
    #[error("peer speaks littleboss protocol {theirs}, this binary speaks {ours}")]
    Version { theirs: u16, ours: Versions },
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// `[version][postcard body]`, at this build's newest version.
#[cfg(test)]
pub(crate) fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    encode_at(PROTOCOL, msg)
}

/// `[version][postcard body]` at `version`.
pub(crate) fn encode_at<T: Serialize>(version: u16, msg: &T) -> Vec<u8> {
    let mut out = version.to_le_bytes().to_vec();
    // Serializing these plain types into a Vec cannot fail; fall back to an empty body
    // (which every receiver refuses) rather than panic.
    out.extend(postcard::to_stdvec(msg).unwrap_or_default());
    out
}

/// The version of a message, refused unless `accepted` holds it; and its body.
pub(crate) fn peek_version(bytes: &[u8], accepted: Versions) -> Result<(u16, &[u8]), DecodeError> {
    let (version, body) = bytes
        .split_first_chunk::<2>()
        .ok_or(DecodeError::Short(bytes.len()))?;
    let theirs = u16::from_le_bytes(*version);
    if !accepted.contains(theirs) {
        return Err(DecodeError::Version {
            theirs,
            ours: accepted,
        });
    }
    Ok((theirs, body))
}

/// Checks that the version is in `accepted`, then decodes the whole body (trailing
/// bytes are an error); returns the version with the message, so that the answer can
/// be given in it.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    accepted: Versions,
) -> Result<(u16, T), DecodeError> {
    let (version, body) = peek_version(bytes, accepted)?;
    match postcard::take_from_bytes::<T>(body) {
        Ok((msg, [])) => Ok((version, msg)),
        Ok((_, rest)) => Err(DecodeError::Malformed(format!(
            "{} bytes after the message",
            rest.len()
        ))),
        Err(e) => Err(DecodeError::Malformed(e.to_string())),
    }
}

/// `[length: u32 LE][message]` for the control socket.
pub(crate) fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// The length in a frame header, refused above [`MAX_CONTROL_FRAME`].
pub(crate) fn frame_len(header: [u8; 4]) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_CONTROL_FRAME {
        return Err(DecodeError::Malformed(format!(
            "frame of {len} bytes; at most {MAX_CONTROL_FRAME}"
        )));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parcel(id: u64, bytes: usize) -> (Parcel, u64) {
        let parcel = Parcel {
            id,
            listener: "http".into(),
            bytes: vec![b'x'; bytes],
        };
        (parcel, id)
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let text = capped("é".repeat(MAX_TEXT));
        assert!(text.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(text.ends_with('…'));
        assert_eq!(capped("short".into()), "short");
    }

    #[test]
    fn probation_times_read_as_the_lines_say_them() {
        for (ms, shown) in [
            (0, "0 s"),
            (400, "0.4 s"),
            (3_210, "3.2 s"),
            (3_000, "3 s"),
            (9_999, "9.9 s"),
            (12_400, "12 s"),
            (12_600, "13 s"),
            (30_000, "30 s"),
        ] {
            assert_eq!(seconds(ms), shown, "{ms}");
        }
    }

    #[test]
    fn parcels_go_in_batches_that_fit_a_message() {
        // By count of fds.
        let many: Vec<_> = (0..300).map(|id| parcel(id, 0)).collect();
        let sizes: Vec<usize> = (parcel_batches(many, 128, 60_000).iter())
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [128, 128, 44]);
        // By bytes, in order; one larger than a batch goes alone.
        let big = vec![
            parcel(1, 30_000),
            parcel(2, 30_000),
            parcel(3, 70_000),
            parcel(4, 1),
        ];
        let batches = parcel_batches(big, 128, 60_100);
        let ids: Vec<Vec<u64>> = (batches.iter())
            .map(|b| b.iter().map(|(_, id)| *id).collect())
            .collect();
        assert_eq!(ids, [vec![1, 2], vec![3], vec![4]]);
        assert!(parcel_batches(Vec::<(Parcel, u64)>::new(), 128, 60_000).is_empty());
    }

    #[test]
    fn long_lists_of_ids_go_in_several_messages_that_each_fit() {
        let ids: Vec<u64> = (0..10_000).map(|i| u64::MAX - i).collect();
        let msgs = SupervisorMsg::Taken(ids.clone()).in_batches(crate::channel::BATCH_BYTES);
        assert!(msgs.len() > 1);
        let mut again = Vec::new();
        for msg in msgs {
            let bytes = msg
                .encode_for(Some(Versions::ours().newest))
                .expect("encodes");
            assert!(
                bytes.len() <= crate::channel::MAX_MESSAGE,
                "{}",
                bytes.len()
            );
            let SupervisorMsg::Taken(part) = msg else {
                panic!("{msg:?}");
            };
            again.extend(part);
        }
        assert_eq!(again, ids);
        let short = SupervisorMsg::Recall(vec![1, 2]);
        assert_eq!(short.clone().in_batches(100), vec![short]);
        assert_eq!(
            SupervisorMsg::Lameduck.in_batches(1),
            vec![SupervisorMsg::Lameduck]
        );
    }

    #[test]
    fn a_child_s_long_lists_of_answers_go_in_several_messages_that_each_fit() {
        let ids: Vec<u64> = (0..10_000).map(|i| u64::MAX - i).collect();
        for make in [ChildMsg::Adopted, ChildMsg::Declined] {
            let msgs = make(ids.clone()).in_batches(crate::channel::BATCH_BYTES);
            assert!(msgs.len() > 1);
            let mut again = Vec::new();
            for msg in msgs {
                let bytes = encode_at(Versions::ours().newest, &msg);
                assert!(
                    bytes.len() <= crate::channel::MAX_MESSAGE,
                    "{}",
                    bytes.len()
                );
                match msg {
                    ChildMsg::Adopted(part) | ChildMsg::Declined(part) => again.extend(part),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(again, ids);
        }
        assert_eq!(ChildMsg::Ready.in_batches(1), vec![ChildMsg::Ready]);
    }

    #[test]
    fn deadlines_follow_the_times_that_apply() {
        let own = Waits {
            lameduck: Duration::from_secs(3),
            ready: Duration::from_secs(5),
            probation: Duration::ZERO,
        };
        let reload = ReloadRequest {
            path: Vec::new(),
            args: None,
            listeners: Vec::new(),
        };
        let status = |lameduck_ms, hello_timeout_ms| Status {
            name: "svc".into(),
            protocol: 2,
            protocols: [1, 2],
            supervisor_pid: 1,
            supervisor_started: String::new(),
            supervisor_path: None,
            upgrades: 0,
            lameduck_ms,
            hello_timeout_ms,
            child_pid: None,
            child_path: None,
            child_args: Vec::new(),
            child_started: None,
            previous_path: None,
            reloads: 0,
            failures: 0,
            restarts: 0,
            state: "running".into(),
            listeners: Default::default(),
            standby_pid: None,
            probation_ends: None,
            last_reload_state_bytes: None,
        };
        let told = status(7_000, 2_000);
        let secs = |request: &Request, status: Option<&Status>| {
            request.deadline(status, &own).within.as_secs()
        };
        // The children's lameduck as the supervisor tells it, twice, plus the margin.
        assert_eq!(secs(&Request::Stop, Some(&told)), 7 * 2 + 10);
        // Not told (protocol 1): this binary's own.
        assert_eq!(secs(&Request::Stop, Some(&status(0, 0))), 3 * 2 + 10);
        assert_eq!(secs(&Request::Stop, None), 3 * 2 + 10);
        // Opening, the hello, the new child's own ready time, the margin.
        let asked = Request::Reload(reload.clone());
        assert_eq!(secs(&asked, Some(&told)), 10 + 2 + 5 + 10);
        assert_eq!(
            secs(&Request::Upgrade(reload), Some(&told)),
            10 + 2 + 5 + 10 + 20 + 7 + 10
        );
        assert_eq!(secs(&Request::Status, Some(&told)), 10);
        assert_eq!(
            asked.deadline(None, &own).waiting,
            "waiting for the new child to be ready"
        );
    }

    const ALL: Versions = Versions {
        oldest: OLDEST_PROTOCOL,
        newest: PROTOCOL,
    };

    fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
        decode(bytes, ALL).map(|(_, msg)| msg)
    }

    #[test]
    fn a_child_is_told_only_what_its_version_has() {
        let recall = SupervisorMsg::Recall(vec![7]);
        assert_eq!(recall.encode_for(Some(2)), None, "moving is protocol 3's");
        assert_eq!(recall.encode_for(Some(3)), Some(encode_at(3, &recall)));
        let lameduck = SupervisorMsg::Lameduck;
        assert_eq!(lameduck.encode_for(Some(2)), Some(encode_at(2, &lameduck)));
        // Before its hello, in the oldest version this build speaks.
        assert_eq!(
            lameduck.encode_for(None),
            Some(encode_at(OLDEST_PROTOCOL, &lameduck))
        );
    }

    fn status() -> Status {
        Status {
            name: "svc".into(),
            protocol: 2,
            protocols: [1, 2],
            supervisor_pid: 7,
            supervisor_started: "2026-12-02T00:00:00.000Z".into(),
            supervisor_path: Some("/bin/svc".into()),
            upgrades: 3,
            lameduck_ms: 2000,
            hello_timeout_ms: 30_000,
            child_pid: Some(8),
            child_path: Some("/bin/svc".into()),
            child_args: vec!["svc".into()],
            child_started: None,
            previous_path: None,
            reloads: 1,
            failures: 0,
            restarts: 0,
            state: "running".into(),
            listeners: BTreeMap::new(),
            standby_pid: None,
            probation_ends: None,
            last_reload_state_bytes: None,
        }
    }

    #[test]
    fn versions_parse_and_meet() {
        assert_eq!(Versions::parse("1-7"), Some(ALL));
        assert_eq!(
            Versions::parse("2"),
            Some(Versions {
                oldest: 2,
                newest: 2
            })
        );
        assert_eq!(Versions::parse("2-1"), None);
        assert_eq!(Versions::parse("x"), None);
        assert_eq!(ALL.to_string(), "1-7");
        assert_eq!(ALL.common(Versions::V1), Some(1));
        assert_eq!(
            ALL.common(Versions {
                oldest: 2,
                newest: 8
            }),
            Some(7)
        );
        assert_eq!(
            Versions::V1.common(Versions {
                oldest: 2,
                newest: 2
            }),
            None
        );
    }

    /// A status to a client of protocol 2 or 3 has their layout: without the probation's
    /// fields, which come back empty.
    #[test]
    fn a_status_of_protocols_2_and_3_has_no_probation() {
        let on_probation = Status {
            state: "probation".into(),
            standby_pid: Some(9),
            probation_ends: Some("2026-12-04T00:00:30Z".into()),
            ..status()
        };
        let response = Response::Status(Box::new(on_probation.clone()));
        for version in [2, 3] {
            let bytes = encode_response(version, &response);
            let Ok((v, Response::Status(read))) = decode_any_response(&bytes) else {
                panic!("version {version}");
            };
            assert_eq!(v, version);
            assert_eq!(read.standby_pid, None);
            assert_eq!(read.probation_ends, None);
            assert_eq!(read.state, "probation");
        }
        let bytes = encode_response(4, &response);
        assert_eq!(
            decode_any_response(&bytes),
            Ok((4, Response::Status(Box::new(on_probation))))
        );
        // A refusal reads as a failure to a client of an earlier protocol.
        let refused = Response::Refused {
            reason: "no reload is on probation".into(),
        };
        for version in [1, 2, 3] {
            let (_, read) = decode_any_response(&encode_response(version, &refused)).unwrap();
            assert_eq!(
                read,
                Response::Failed {
                    reason: "no reload is on probation".into()
                }
            );
        }
    }

    /// A status or a history to a client of protocol 4 or 5 has their layout: without
    /// the state taken at the last reload, or by an event's new child, which come back
    /// empty; at protocol 6 they are read whole.
    #[test]
    fn a_status_and_a_history_of_protocols_4_and_5_have_no_state_transfer() {
        use crate::control::history::{Event, TakenState, sample_reload};
        let took = Status {
            last_reload_state_bytes: Some(1 << 20),
            state: "probation".into(),
            standby_pid: Some(9),
            ..status()
        };
        let response = Response::Status(Box::new(took.clone()));
        let event = Event {
            state: Some(TakenState {
                bytes: 1 << 20,
                fds: 3,
            }),
            ..sample_reload(7)
        };
        let history = Response::History(History {
            omitted: 2,
            events: vec![event.clone()],
        });
        for version in [4, 5] {
            let bytes = encode_response(version, &response);
            let Ok((v, Response::Status(read))) = decode_any_response(&bytes) else {
                panic!("version {version}");
            };
            assert_eq!(v, version);
            assert_eq!(read.last_reload_state_bytes, None);
            assert_eq!(read.standby_pid, Some(9), "the probation's fields stay");
            // As the layout of that version had it: the same bytes as with no state.
            let none = Status {
                last_reload_state_bytes: None,
                ..took.clone()
            };
            assert_eq!(
                bytes,
                encode_at(version, &ResponseV4::Status(Box::new(none.into())))
            );
        }
        let bytes = encode_response(5, &history);
        let Ok((5, Response::History(read))) = decode_any_response(&bytes) else {
            panic!("a history of protocol 5");
        };
        assert_eq!(read.omitted, 2);
        assert_eq!(
            read.events,
            [Event {
                state: None,
                ..event
            }]
        );
        for response in [response, history] {
            let bytes = encode_response(6, &response);
            assert_eq!(decode_any_response(&bytes), Ok((6, response)));
        }
    }

    /// A response to a protocol-1 request is laid out as protocol 1 lays it out, which
    /// an older client decodes; the fields protocol 1 lacks come back as defaults.
    #[test]
    fn responses_follow_the_version_of_the_request() {
        let response = Response::Status(Box::new(status()));
        let v1 = encode_response(1, &response);
        assert_eq!(&v1[..2], &1u16.to_le_bytes());
        let (_, old) = decode::<ResponseV1>(&v1, Versions::V1).unwrap();
        let ResponseV1::Status(old) = old else {
            panic!("{old:?}")
        };
        assert_eq!(old.name, "svc");
        let Ok(Response::Status(back)) = decode_response(&v1) else {
            panic!("decodes")
        };
        assert_eq!(back.supervisor_path, None);
        assert_eq!(back.protocols, [2, 2]);
        assert_eq!(
            decode_response(&encode_response(2, &response)),
            Ok(response)
        );
        let stopped = Response::Stopped { code: 3 };
        assert_eq!(decode_response(&encode_response(1, &stopped)), Ok(stopped));
    }

    #[test]
    fn round_trips() {
        let hello = ChildMsg::Hello(ChildHello {
            name: "svc".into(),
            pid: 42,
            calls_ready: true,
            settle_ms: 250,
            ready_timeout_ms: 30_000,
            lameduck_ms: 2000,
        });
        assert_eq!(dec::<ChildMsg>(&encode(&hello)).unwrap(), hello);
        let welcome = SupervisorMsg::Welcome {
            listeners: vec![ListenerInfo {
                name: "http".into(),
                network: Network::Tcp,
                addr: Some("127.0.0.1:80".into()),
            }],
        };
        assert_eq!(dec::<SupervisorMsg>(&encode(&welcome)).unwrap(), welcome);
        let reload = Request::Reload(ReloadRequest {
            path: b"/bin/x".to_vec(),
            args: Some(vec![b"x".to_vec()]),
            listeners: vec![("http".into(), ":0".into())],
        });
        assert_eq!(dec::<Request>(&encode(&reload)).unwrap(), reload);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let mut msg = encode(&Request::Status);
        msg[0] = 9;
        assert_eq!(
            dec::<Request>(&msg),
            Err(DecodeError::Version {
                theirs: 9,
                ours: ALL
            })
        );
        assert_eq!(dec::<Request>(&[1]), Err(DecodeError::Short(1)));
        assert!(matches!(
            dec::<Request>(&[1, 0, 200]),
            Err(DecodeError::Malformed(_))
        ));
        let mut long = encode(&Request::Stop);
        long.push(0);
        assert!(matches!(
            dec::<Request>(&long),
            Err(DecodeError::Malformed(_))
        ));
        assert!(frame_len(*b"{\"ve").is_err());
        assert_eq!(frame_len(16u32.to_le_bytes()), Ok(16));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn with_version(body: Vec<u8>) -> Vec<u8> {
            let mut bytes = PROTOCOL.to_le_bytes().to_vec();
            bytes.extend(body);
            bytes
        }

        proptest! {
            // Bytes from a client or a child never panic a decoder: they decode, or
            // they are an error.
            #[test]
            fn decoders_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = dec::<Request>(&bytes);
                let _ = dec::<Response>(&bytes);
                let _ = dec::<ChildMsg>(&bytes);
                let _ = dec::<SupervisorMsg>(&bytes);
                let framed = with_version(bytes);
                let _ = dec::<Request>(&framed);
                let _ = dec::<Response>(&framed);
                let _ = dec::<ChildMsg>(&framed);
                let _ = dec::<SupervisorMsg>(&framed);
            }

            #[test]
            fn frame_lengths_are_capped(header in any::<[u8; 4]>()) {
                let len = u32::from_le_bytes(header) as usize;
                prop_assert_eq!(frame_len(header).is_ok(), len <= MAX_CONTROL_FRAME);
            }

            #[test]
            fn reload_requests_round_trip(
                path in proptest::collection::vec(any::<u8>(), 0..64),
                args in proptest::option::of(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..4)),
                listeners in proptest::collection::vec((".{0,8}", ".{0,16}"), 0..4),
            ) {
                let request = Request::Reload(ReloadRequest { path, args, listeners });
                prop_assert_eq!(dec::<Request>(&encode(&request)), Ok(request));
            }

            #[test]
            fn hellos_round_trip(name in ".{0,32}", pid: u32, calls_ready: bool, settle_ms: u64, ready_timeout_ms: u64, lameduck_ms: u64) {
                let hello = ChildMsg::Hello(ChildHello { name, pid, calls_ready, settle_ms, ready_timeout_ms, lameduck_ms });
                prop_assert_eq!(dec::<ChildMsg>(&encode(&hello)), Ok(hello));
            }

            // A valid message cut short is an error, never a panic or a different message.
            #[test]
            fn truncated_messages_are_errors(cut in 0usize..64) {
                let msg = encode(&Request::Reload(ReloadRequest {
                    path: b"/usr/local/bin/myblog".to_vec(),
                    args: Some(vec![b"myblog".to_vec(), b"-v".to_vec()]),
                    listeners: vec![("https".into(), ":443".into())],
                }));
                let cut = cut.min(msg.len() - 1);
                prop_assert!(dec::<Request>(&msg[..cut]).is_err());
            }
        }
    }
}
