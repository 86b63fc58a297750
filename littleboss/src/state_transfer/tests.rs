//! State transfer between two children, each with a real channel whose other end the
//! test holds, playing the supervisor: it reads what a child sends and relays it to the
//! other as the supervisor would, with the same fds.
//!
//! The fds of the tests are memfds named for the test, and those of the states are
//! named `littleboss-state`: `/proc/self/fd` and `/proc/self/maps` say how many of each
//! are open or mapped, whatever the other tests of the process do meanwhile. The tests
//! that count take one lock, so that they do not count each other's states.

#![cfg(target_os = "linux")]

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use rustix::net::RecvFlags;
use tokio::sync::watch;

use super::sealed::{self, Seals};
use super::*;
use crate::channel::{self, Framing};
use crate::context::{self, Standing};
use crate::control::protocol::{
    self, ChildMsg, PROTOCOL, STATE_FDS_PER_MESSAGE, StateHeader, SupervisorMsg, Versions,
};
use crate::handoff::Post;

/// The pid the test's supervisor says the giver has.
const GIVER: u32 = 4242;

/// The pid of the new process that asks, as the supervisor says it.
const SUCCESSOR: u32 = 4343;

/// Taken by the tests that count the fds and mappings of states (each test has a
/// runtime of its own; this lock belongs to none).
static COUNTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn counting() -> tokio::sync::MutexGuard<'static, ()> {
    COUNTING.lock().await
}

/// How many fds of this process name a file whose name contains `tag`.
fn open_fds(tag: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains(tag))
        .count()
}

/// How many mappings of this process are of a file whose name contains `tag`.
fn mappings(tag: &str) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| line.contains(tag))
        .count()
}

/// The fds and mappings of states open in this process.
fn states_open() -> (usize, usize) {
    (
        open_fds(sealed::MEMFD_NAME),
        mappings(&format!("memfd:{}", sealed::MEMFD_NAME)),
    )
}

/// Waits (up to 5 s) until no more states' files and mappings are open than `before`.
/// Tests that do not take [`counting`] (the property tests) open such files of their
/// own for a moment, so one look could count theirs: the count must come back at some
/// instant, which it does only once this test's are closed.
fn states_back_to(before: (usize, usize)) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = states_open();
        if now.0 <= before.0 && now.1 <= before.1 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "states' files and mappings open: {now:?}, before: {before:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A file named `tag` holding `text`, as a program would give it.
fn file(tag: &str, text: &str) -> OwnedFd {
    let fd = rustix::fs::memfd_create(tag, rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    std::fs::File::from(fd.try_clone().unwrap())
        .write_all_at(text.as_bytes(), 0)
        .unwrap();
    fd
}

/// What the file of `fd` holds.
fn text_of(fd: &OwnedFd) -> String {
    let mut buf = vec![0u8; 256];
    let file = std::fs::File::from(fd.try_clone().unwrap());
    let n = file.read_at(&mut buf, 0).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// The child's messages go straight onto its end of the channel, as the writer thread
/// sends them.
struct Sender(Arc<OwnedFd>);

impl Post for Sender {
    fn post(&self, msg: ChildMsg, fds: Vec<OwnedFd>) {
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
        let bytes = protocol::encode_at(PROTOCOL, &msg);
        channel::send(self.0.as_fd(), &bytes, &borrowed).expect("the child's message sent");
    }
}

/// One child's side of state transfer, with the supervisor's end of its channel.
struct Side {
    hub: Arc<StateTransfer>,
    child: Arc<OwnedFd>,
    supervisor: OwnedFd,
    lameduck: watch::Sender<bool>,
    standing: watch::Sender<Standing>,
}

impl Side {
    fn new() -> Side {
        let (supervisor, child) = channel::pair_of(Framing::Packet).unwrap();
        for end in [&supervisor, &child] {
            let wait = Some(Duration::from_secs(10));
            rustix::net::sockopt::set_socket_timeout(
                end,
                rustix::net::sockopt::Timeout::Recv,
                wait,
            )
            .unwrap();
        }
        let child = Arc::new(child);
        let (lameduck, lameduck_rx) = watch::channel(false);
        let (standing, standing_rx) = watch::channel(Standing::default());
        let post: Box<dyn Post> = Box::new(Sender(Arc::clone(&child)));
        let winding_down = context::winding_down(&lameduck_rx, &standing_rx);
        let hub = Arc::new(StateTransfer::new(Some(post), winding_down));
        Side {
            hub,
            child,
            supervisor,
            lameduck,
            standing,
        }
    }

    /// The next message the child sent, as the supervisor receives it.
    fn heard(&self) -> (ChildMsg, Vec<OwnedFd>) {
        let got = channel::recv(self.supervisor.as_fd(), RecvFlags::empty())
            .unwrap()
            .expect("a message from the child");
        assert!(!got.cut);
        let (_, msg) = protocol::decode::<ChildMsg>(&got.bytes, Versions::ours()).unwrap();
        (msg, got.fds)
    }

    /// Whether the child sent nothing more.
    fn silent(&self) -> bool {
        matches!(
            channel::recv(self.supervisor.as_fd(), RecvFlags::DONTWAIT),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    /// The supervisor sends `msg` with `fds`, and the child's reader hands it over.
    fn tell(&self, msg: SupervisorMsg, fds: Vec<OwnedFd>) {
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
        let bytes = protocol::encode_at(PROTOCOL, &msg);
        channel::send(self.supervisor.as_fd(), &bytes, &borrowed).unwrap();
        drop(fds);
        let got = channel::recv(self.child.as_fd(), RecvFlags::empty())
            .unwrap()
            .unwrap();
        let (_, msg) = protocol::decode::<SupervisorMsg>(&got.bytes, Versions::ours()).unwrap();
        assert!(StateTransfer::handles(&msg), "{msg:?}");
        self.hub.on_message(msg, got.fds, got.cut);
    }

    /// The request of a successor, as the program gets it from `state_wanted`.
    async fn asked(&self) -> StateRequest {
        let wanted = self.hub.wanted();
        self.tell(
            SupervisorMsg::StateWanted {
                successor: SUCCESSOR,
            },
            Vec::new(),
        );
        let request = wanted.await;
        assert_eq!(request.successor_pid(), SUCCESSOR);
        request
    }

    /// Reads the `OffersState` the first `state_wanted` sends.
    fn offered(&self) {
        assert!(matches!(self.heard().0, ChildMsg::OffersState));
    }

    /// Starts `take_state` (with `calls_ready`) and reads its ask.
    fn take(&self) -> impl Future<Output = Taken> + Send + 'static {
        let taking = self
            .hub
            .take(true, Duration::from_secs(5), Duration::from_secs(30));
        assert_eq!(self.heard().0, ChildMsg::StateAsk { timeout_ms: 5_000 });
        taking
    }
}

/// Relays a state that `giver` gives to `taker`, as the supervisor does: the head
/// with its file and the giver's pid, then each message of fds; the head.
fn relay(giver: &Side, taker: &Side) -> StateHeader {
    let (msg, fds) = giver.heard();
    let ChildMsg::StateGive(head) = msg else {
        panic!("not a state: {msg:?}");
    };
    assert_eq!(fds.len(), usize::from(head.size > 0), "{head:?}");
    let relayed = StateHeader {
        from: GIVER,
        ..head
    };
    taker.tell(SupervisorMsg::State(relayed), fds);
    let mut left = head.fds as usize;
    while left > 0 {
        let (msg, fds) = giver.heard();
        let ChildMsg::StateFds(names) = msg else {
            panic!("not the state's fds: {msg:?}");
        };
        assert_eq!(names.len(), fds.len());
        assert!(names.len() <= STATE_FDS_PER_MESSAGE);
        left -= names.len();
        taker.tell(SupervisorMsg::StateFds(names), fds);
    }
    head
}

/// `len` bytes of a pattern.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn text<T>(result: Result<T, Error>) -> String {
    match result {
        Ok(_) => "Ok".to_string(),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_state_with_three_fds_reaches_the_new_process_whole() {
    let _counting = counting().await;
    let tag = "lb-test-whole";
    let before = states_open();
    let (giver, taker) = (Side::new(), Side::new());
    let taking = taker.take();
    let request = giver.asked().await;
    giver.offered();
    let bytes = pattern(1 << 20);
    let fds = (0..3)
        .map(|i| (format!("fd{i}"), file(tag, &format!("file {i}"))))
        .collect();
    let given = request.give(&bytes, fds).unwrap();
    let head = relay(&giver, &taker);
    assert_eq!((head.size, head.fds, head.update), (1 << 20, 3, false));
    let mut inherited = taking.await.unwrap().expect("a state");
    assert_eq!(inherited.bytes(), &bytes[..]);
    assert_eq!(inherited.predecessor_pid(), GIVER);
    let shown = format!("{inherited:?}");
    assert_eq!(
        shown,
        "Inherited { bytes: 1048576, fds: [\"fd0\", \"fd1\", \"fd2\"], predecessor_pid: 4242 }"
    );
    // The giver keeps what it gave until the outcome; the taker has its own.
    assert_eq!(open_fds(tag), 6);
    let fds = inherited.take_fds();
    let names: Vec<&str> = fds.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["fd0", "fd1", "fd2"]);
    for (i, (_, fd)) in fds.iter().enumerate() {
        assert_eq!(text_of(fd), format!("file {i}"));
    }
    assert!(inherited.take_fds().is_empty());
    let outcome = given.outcome();
    giver.tell(SupervisorMsg::StateDone { committed: true }, Vec::new());
    assert!(outcome.await);
    assert_eq!(open_fds(tag), 3, "the giver closed its own at the outcome");
    // Mapped, not copied, and unmapped on drop; its fd closed once mapped.
    assert_eq!(states_open(), (before.0, before.1 + 1));
    drop((fds, inherited));
    assert_eq!(open_fds(tag), 0);
    states_back_to(before);
    assert!(giver.silent() && taker.silent());
}

#[tokio::test]
async fn an_empty_state_has_no_file() {
    let _counting = counting().await;
    let before = states_open();
    let (giver, taker) = (Side::new(), Side::new());
    let taking = taker.take();
    let request = giver.asked().await;
    giver.offered();
    let given = request.give(&[], Vec::new()).unwrap();
    let head = relay(&giver, &taker);
    assert_eq!((head.size, head.fds), (0, 0));
    let inherited = taking.await.unwrap().expect("a state");
    assert!(inherited.bytes().is_empty());
    assert_eq!(inherited.format_version(), None);
    states_back_to(before);
    drop(inherited);
    giver.tell(SupervisorMsg::StateDone { committed: false }, Vec::new());
    assert!(!given.outcome().await);
}

#[tokio::test]
async fn many_fds_go_in_messages_of_at_most_a_hundred() {
    let _counting = counting().await;
    let tag = "lb-test-many";
    let (giver, taker) = (Side::new(), Side::new());
    let taking = taker.take();
    let request = giver.asked().await;
    giver.offered();
    let fds = (0..250)
        .map(|i| (format!("conn-{i}"), file(tag, &i.to_string())))
        .collect();
    let _given = request.give(b"x", fds).unwrap();
    relay(&giver, &taker);
    let mut inherited = taking.await.unwrap().expect("a state");
    let fds = inherited.take_fds();
    assert_eq!(fds.len(), 250);
    for (i, (name, fd)) in fds.iter().enumerate() {
        assert_eq!(
            (name.as_str(), text_of(fd)),
            (&*format!("conn-{i}"), i.to_string())
        );
    }
    drop(fds);
    giver.tell(SupervisorMsg::StateDone { committed: true }, Vec::new());
    assert_eq!(open_fds(tag), 0);
}

#[tokio::test]
async fn a_file_not_sealed_or_of_another_size_fails_the_take_and_is_closed() {
    let _counting = counting().await;
    let tag = "lb-test-unsealed";
    let before = states_open();
    let all = Seals {
        write: true,
        grow: true,
        shrink: true,
    };
    let (pipe, _writer) = rustix::pipe::pipe().unwrap();
    let cases: Vec<(u64, Vec<OwnedFd>, &str)> = vec![
        (
            5,
            vec![
                sealed::Writer::holding_as(b"hello", sealed::Kind::Unlinked)
                    .unwrap()
                    .0,
            ],
            "the state's file is not a memory file that can be sealed",
        ),
        (
            6,
            vec![sealed::Writer::holding(b"hello").unwrap().0],
            "the state's file holds 5 bytes, the message said 6",
        ),
        (0, vec![pipe], "the state's head came with 1 fds for 0"),
        (5, Vec::new(), "the state's head came with 0 fds for 1"),
    ];
    // A memfd of the test's, which can be sealed: only some seals, or none.
    let memfd = |seals| {
        let fd = rustix::fs::memfd_create(
            tag,
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )
        .unwrap();
        std::fs::File::from(fd.try_clone().unwrap())
            .write_all_at(b"hello", 0)
            .unwrap();
        sealed::shims::seal_only(fd.as_fd(), seals).unwrap();
        fd
    };
    let unsealed = vec![
        (
            5,
            vec![memfd(Seals::default())],
            "the state's file is not sealed against writing",
        ),
        (
            5,
            vec![memfd(Seals {
                shrink: false,
                ..all
            })],
            "the state's file is not sealed against shrinking",
        ),
    ];
    for (size, fds, refusal) in cases.into_iter().chain(unsealed) {
        let taker = Side::new();
        let taking = taker.take();
        let head = StateHeader {
            size,
            fds: 0,
            from: GIVER,
            update: false,
        };
        taker.tell(SupervisorMsg::State(head), fds);
        let refused = text(taking.await);
        assert!(refused.starts_with(refusal), "{refused}");
    }
    assert_eq!(open_fds(tag), 0);
    states_back_to(before);
}

#[tokio::test]
async fn a_state_over_the_limits_is_refused_and_the_new_process_told_why() {
    let _counting = counting().await;
    let tag = "lb-test-limits";
    for (fds, refusal) in [
        (
            vec![("db", "a"), ("db", "b")],
            "the state's fd \"db\" is given twice",
        ),
        (vec![("", "a")], "the state's fd \"\" has an empty name"),
    ] {
        let (giver, taker) = (Side::new(), Side::new());
        let taking = taker.take();
        let request = giver.asked().await;
        giver.offered();
        let fds = fds
            .into_iter()
            .map(|(name, text)| (name.to_string(), file(tag, text)))
            .collect();
        let refused = request.give(b"state", fds).unwrap_err();
        assert_eq!(refused.to_string(), refusal);
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        // The new process is told why, in the same words.
        let (msg, fds) = giver.heard();
        let reason = format!(
            "the process it replaces, pid {}, could not give its state: {refusal}",
            std::process::id()
        );
        assert_eq!(
            msg,
            ChildMsg::StateNone {
                reason: Some(reason.clone())
            }
        );
        assert!(fds.is_empty());
        taker.tell(
            SupervisorMsg::NoState {
                reason: Some(reason.clone()),
            },
            Vec::new(),
        );
        assert_eq!(text(taking.await), reason);
        assert!(giver.silent());
    }
    assert_eq!(open_fds(tag), 0);
}

#[tokio::test]
async fn a_request_void_before_the_program_answers_sends_nothing() {
    let _counting = counting().await;
    let tag = "lb-test-void";
    let giver = Side::new();
    // Handed to the program, then void: give says the successor is gone.
    let request = giver.asked().await;
    giver.offered();
    giver.tell(SupervisorMsg::StateDone { committed: false }, Vec::new());
    let fds = vec![("a".to_string(), file(tag, "a"))];
    let gone = request.give(b"state", fds).unwrap_err();
    assert!(matches!(
        gone,
        Error::State {
            problem: StateProblem::SuccessorGone
        }
    ));
    assert!(giver.silent());
    assert_eq!(open_fds(tag), 0);
    // Void before the program took it: dropped, never handed out.
    let wanted = giver.hub.wanted();
    giver.tell(
        SupervisorMsg::StateWanted {
            successor: SUCCESSOR,
        },
        Vec::new(),
    );
    giver.tell(SupervisorMsg::StateDone { committed: false }, Vec::new());
    let waited = tokio::time::timeout(Duration::from_millis(50), wanted).await;
    assert!(waited.is_err(), "a void request was handed out");
    // Void, then dropped unanswered: nothing either.
    let request = giver.asked().await;
    giver.tell(SupervisorMsg::StateDone { committed: false }, Vec::new());
    drop(request);
    assert!(giver.silent());
}

#[tokio::test]
async fn a_request_dropped_unanswered_declines() {
    let giver = Side::new();
    let request = giver.asked().await;
    giver.offered();
    drop(request);
    assert_eq!(giver.heard().0, ChildMsg::StateNone { reason: None });
    let taker = Side::new();
    let taking = taker.take();
    taker.tell(SupervisorMsg::NoState { reason: None }, Vec::new());
    assert!(taking.await.unwrap().is_none());
    // A child that never offered is answered at once.
    let never = Side::new();
    never.tell(
        SupervisorMsg::StateWanted {
            successor: SUCCESSOR,
        },
        Vec::new(),
    );
    assert_eq!(never.heard().0, ChildMsg::StateNone { reason: None });
}

#[tokio::test]
async fn a_giver_gone_halfway_fails_the_take_and_closes_what_came() {
    let _counting = counting().await;
    let tag = "lb-test-halfway";
    let before = states_open();
    let taker = Side::new();
    let taking = taker.take();
    let (file_fd, size) = sealed::Writer::holding(b"state").unwrap();
    let head = StateHeader {
        size,
        fds: 3,
        from: GIVER,
        update: false,
    };
    taker.tell(SupervisorMsg::State(head), vec![file_fd]);
    taker.tell(
        SupervisorMsg::StateFds(vec!["a".into()]),
        vec![file(tag, "a")],
    );
    let reason = "the process it replaces exited before it had given its state";
    taker.tell(
        SupervisorMsg::NoState {
            reason: Some(reason.into()),
        },
        Vec::new(),
    );
    assert_eq!(text(taking.await), reason);
    assert_eq!(open_fds(tag), 0);
    states_back_to(before);
    // What comes after is closed too.
    taker.tell(
        SupervisorMsg::StateFds(vec!["b".into()]),
        vec![file(tag, "b")],
    );
    assert_eq!(open_fds(tag), 0);
}

#[tokio::test]
async fn fds_cut_short_fail_the_take_naming_the_fd_limit() {
    let _counting = counting().await;
    let tag = "lb-test-cut";
    let taker = Side::new();
    let taking = taker.take();
    let head = StateHeader {
        size: 0,
        fds: 2,
        from: GIVER,
        update: false,
    };
    taker.tell(SupervisorMsg::State(head), Vec::new());
    // As the reader hands over a message whose fds the kernel cut short.
    let names = SupervisorMsg::StateFds(vec!["a".into(), "b".into()]);
    taker.hub.on_message(names, vec![file(tag, "a")], true);
    assert_eq!(
        text(taking.await),
        "the state's fds could not all be received: this process is out of fds (its fd limit)"
    );
    assert_eq!(open_fds(tag), 0);
}

#[tokio::test]
async fn fds_that_do_not_match_their_names_fail_the_take() {
    let _counting = counting().await;
    let tag = "lb-test-mismatch";
    for (fds, names, refusal) in [
        (
            1,
            vec!["a", "b"],
            "a message of the state's fds came with 1 fds for 2 names",
        ),
        (
            3,
            vec!["a", "b", "c"],
            "the state's fds came to more than the 2 its head said",
        ),
        (2, vec!["a", "a"], "the state's fd \"a\" is given twice"),
    ] {
        let taker = Side::new();
        let taking = taker.take();
        let head = StateHeader {
            size: 0,
            fds: 2,
            from: GIVER,
            update: false,
        };
        taker.tell(SupervisorMsg::State(head), Vec::new());
        let names = names.into_iter().map(String::from).collect();
        let fds = (0..fds).map(|_| file(tag, "x")).collect();
        taker.tell(SupervisorMsg::StateFds(names), fds);
        assert_eq!(text(taking.await), refusal);
    }
    assert_eq!(open_fds(tag), 0);
}

#[tokio::test]
async fn a_typed_state_names_both_versions_when_they_differ() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Counter {
        hits: u64,
        names: Vec<String>,
    }
    let (giver, taker) = (Side::new(), Side::new());
    let taking = taker.take();
    let request = giver.asked().await;
    let value = Counter {
        hits: 7,
        names: vec!["a".into(), "b".into()],
    };
    let _given = request.give_value(3, &value, Vec::new()).unwrap();
    giver.offered();
    relay(&giver, &taker);
    let inherited = taking.await.unwrap().expect("a state");
    assert_eq!(inherited.format_version(), Some(3));
    assert_eq!(inherited.take_value::<Counter>(3).unwrap(), value);
    let other = inherited.take_value::<Counter>(4).unwrap_err();
    assert_eq!(
        other.to_string(),
        "the state is format version 3; this program reads version 4"
    );
    assert!(matches!(
        other,
        Error::State {
            problem: StateProblem::Version {
                found: 3,
                wanted: 4
            }
        }
    ));
    assert_eq!(other.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn take_state_is_refused_when_misused() {
    let taker = Side::new();
    let wait = Duration::from_secs(30);
    let take = |calls_ready| taker.hub.take(calls_ready, wait, wait);
    assert_eq!(
        text(take(false).await),
        "take_state needs calls_ready = true: a program ready after its settle time could be declared ready while it waits for its state"
    );
    assert!(taker.silent(), "nothing asked");
    let first = taker.take();
    assert_eq!(
        text(take(true).await),
        "take_state is waiting for the state already; call it once"
    );
    taker.tell(SupervisorMsg::NoState { reason: None }, Vec::new());
    assert!(first.await.unwrap().is_none());
    assert_eq!(
        text(take(true).await),
        "take_state was called before: the state is taken once"
    );
    taker.hub.ready_called();
    assert_eq!(
        text(take(true).await),
        "take_state after ready(): the state is taken before ready(); a later snapshot comes through state_updated()"
    );
    // ready() while it waits voids it.
    let other = Side::new();
    let taking = other.take();
    other.hub.ready_called();
    assert_eq!(
        text(taking.await),
        "ready() was called while take_state waited: the state is taken before ready(), and this transfer is void"
    );
    assert!(taker.silent() && other.silent());
}

#[tokio::test]
async fn without_state_transfer_nothing_is_asked_nor_offered() {
    let hub = Arc::new(StateTransfer::new(None, Box::new(|| false)));
    let wait = Duration::from_secs(30);
    assert!(hub.take(true, wait, wait).await.unwrap().is_none());
    // The rules hold all the same.
    assert_eq!(
        text(hub.take(true, wait, wait).await),
        "take_state was called before: the state is taken once"
    );
    let wanted = tokio::time::timeout(Duration::from_millis(20), hub.wanted()).await;
    assert!(wanted.is_err(), "nobody asks");
    let updated = tokio::time::timeout(Duration::from_millis(20), hub.updated()).await;
    assert!(updated.is_err(), "nothing comes");
}

#[tokio::test]
async fn the_wait_is_bounded_when_no_answer_comes() {
    let taker = Side::new();
    let taking = taker
        .hub
        .take(true, Duration::from_secs(5), Duration::from_millis(50));
    assert!(matches!(taker.heard().0, ChildMsg::StateAsk { .. }));
    let late = taking.await.unwrap_err();
    assert!(matches!(late, Error::Timeout { .. }), "{late:?}");
    assert_eq!(late.kind(), std::io::ErrorKind::TimedOut);
    // What comes after is closed.
    let (file_fd, size) = sealed::Writer::holding(b"late").unwrap();
    let head = StateHeader {
        size,
        fds: 0,
        from: GIVER,
        update: false,
    };
    taker.tell(SupervisorMsg::State(head), vec![file_fd]);
}

#[tokio::test]
async fn the_later_snapshot_reaches_the_successor_once() {
    let _counting = counting().await;
    let tag = "lb-test-later";
    let (giver, taker) = (Side::new(), Side::new());
    let taking = taker.take();
    let request = giver.asked().await;
    giver.offered();
    let mut given = request.give(b"first", Vec::new()).unwrap();
    relay(&giver, &taker);
    assert_eq!(taking.await.unwrap().unwrap().bytes(), b"first");
    let later = taker.hub.updated();
    // Not while it serves.
    let early = given.update(b"second", Vec::new()).unwrap_err();
    assert_eq!(
        early.to_string(),
        "a later snapshot is given while this process stands by or winds down, once its successor is ready"
    );
    giver.standing.send_modify(|s| s.standby = true);
    let fds = vec![("log".to_string(), file(tag, "log"))];
    given.update(b"second", fds).unwrap();
    let head = relay(&giver, &taker);
    assert!(head.update);
    let mut snapshot = later.await;
    assert_eq!(snapshot.bytes(), b"second");
    let fds = snapshot.take_fds();
    assert_eq!(text_of(&fds[0].1), "log");
    assert_eq!(
        text(given.update(b"third", Vec::new())),
        "a later snapshot was given already; it is given once"
    );
    // Only once: another call never resolves.
    let again = tokio::time::timeout(Duration::from_millis(20), taker.hub.updated()).await;
    assert!(again.is_err());
    assert_eq!(
        open_fds(tag),
        2,
        "the giver keeps its own until the outcome"
    );
    let outcome = given.outcome();
    giver.tell(SupervisorMsg::StateDone { committed: true }, Vec::new());
    assert!(outcome.await);
    drop((fds, snapshot));
    assert_eq!(open_fds(tag), 0);
    // After a transfer that was not committed, there is nobody to give it to.
    let (giver, taker) = (Side::new(), Side::new());
    let taking = taker.take();
    let request = giver.asked().await;
    giver.offered();
    let mut given = request.give(b"first", Vec::new()).unwrap();
    relay(&giver, &taker);
    drop(taking.await);
    giver.tell(SupervisorMsg::StateDone { committed: false }, Vec::new());
    giver.lameduck.send_replace(true);
    assert!(matches!(
        given.update(b"second", Vec::new()),
        Err(Error::State {
            problem: StateProblem::SuccessorGone
        })
    ));
    assert!(giver.silent());
}

#[tokio::test]
async fn a_supervisor_gone_ends_every_wait() {
    let _counting = counting().await;
    let tag = "lb-test-gone";
    let (giver, taker) = (Side::new(), Side::new());
    let taking = taker.take();
    let request = giver.asked().await;
    giver.offered();
    let fds = vec![("a".to_string(), file(tag, "a"))];
    let given = request.give(b"state", fds).unwrap();
    let (_, sent) = giver.heard();
    drop(sent);
    giver.hub.gone();
    taker.hub.gone();
    assert!(!given.outcome().await);
    assert_eq!(
        text(taking.await),
        "the supervisor went away before the state came"
    );
    assert_eq!(open_fds(tag), 0);
}

#[tokio::test]
async fn a_take_given_up_closes_the_state_that_comes() {
    let _counting = counting().await;
    let before = states_open();
    let taker = Side::new();
    let taking = taker.take();
    drop(taking);
    let (file_fd, size) = sealed::Writer::holding(b"unwanted").unwrap();
    let head = StateHeader {
        size,
        fds: 0,
        from: GIVER,
        update: false,
    };
    taker.tell(SupervisorMsg::State(head), vec![file_fd]);
    states_back_to(before);
    let wait = Duration::from_secs(30);
    assert_eq!(
        text(taker.hub.take(true, wait, wait).await),
        "take_state was called before: the state is taken once"
    );
}

#[test]
fn what_a_program_holds_crosses_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    fn sent<T: Send + 'static>(_: &T) {}
    shared::<Inherited>();
    shared::<StateRequest>();
    shared::<Given>();
    let side = Side::new();
    sent(&side.hub.wanted());
    sent(&side.hub.updated());
    sent(&side.hub.take(false, Duration::ZERO, Duration::ZERO));
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        // Any bytes and any number of named fds reach the new process as they were
        // given, through the supervisor's relay.
        #[test]
        fn any_state_is_relayed_whole(
            bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
            fds in 0usize..120,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (got, names) = runtime.block_on(async {
                let (giver, taker) = (Side::new(), Side::new());
                let taking = taker.take();
                let request = giver.asked().await;
                giver.offered();
                let given_fds = (0..fds)
                    .map(|i| (format!("n{i}"), file("lb-test-fuzz", "")))
                    .collect();
                let _given = request.give(&bytes, given_fds).unwrap();
                relay(&giver, &taker);
                let mut inherited = taking.await.unwrap().unwrap();
                let names: Vec<String> =
                    inherited.take_fds().into_iter().map(|(name, _)| name).collect();
                (inherited.bytes().to_vec(), names)
            });
            prop_assert_eq!(got, bytes);
            let expected: Vec<String> = (0..fds).map(|i| format!("n{i}")).collect();
            prop_assert_eq!(names, expected);
        }

        // Any value comes back as it was given, with its version.
        #[test]
        fn any_value_round_trips(
            value in proptest::collection::btree_map(any::<String>(), any::<u64>(), 0..50),
            version in any::<u32>(),
        ) {
            let (fd, size) = value::write(version, &value).unwrap();
            let contents = sealed::open(fd, size).unwrap();
            prop_assert_eq!(value::version_of(contents.as_slice()), Some(version));
            let back: std::collections::BTreeMap<String, u64> =
                value::read(contents.as_slice(), version).unwrap();
            prop_assert_eq!(back, value);
        }
    }
}
