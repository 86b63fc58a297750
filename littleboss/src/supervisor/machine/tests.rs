//! The machine without processes: a driver that plays the shell and the kernel, table
//! tests of transitions, and a property test over random sequences of inputs that
//! checks the supervisor's promises after every step.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::SystemTime;

use proptest::prelude::*;

use super::moves::{ROOM_PLENTY, ROOM_TRUSTED_MS};
use super::*;
use crate::control::history::{Kind, Outcome};
use crate::control::protocol::{ChildHello, Probation, ReloadRequest, StateHeader};

const NAME: &str = "svc";

fn settings(persist: bool, fallback: bool) -> Settings {
    Settings {
        name: NAME.to_string(),
        flag: "littleboss".to_string(),
        persist,
        fallback,
        lameduck_ms: 2_000,
        hello_timeout_ms: 30_000,
        dev: false,
        versions: Versions {
            oldest: 1,
            newest: 3,
        },
        move_cap: 4,
        take_ms: 1_000,
    }
}

/// `--littleboss=dev`, with the program's options at their defaults.
fn dev() -> Settings {
    Settings {
        dev: true,
        ..settings(false, true)
    }
}

fn program(path: &str, exe: FdKey) -> ProgramRecord {
    ProgramRecord {
        path: PathBuf::from(path),
        args: vec![OsString::from(path)],
        exe,
    }
}

/// A hello of protocol 4 that declares a probation of `ms`.
fn hello_probation(ms: u64, standby: bool) -> ChildMsg {
    let ChildMsg::Hello(hello) = hello(true, 2_000) else {
        unreachable!()
    };
    let probation = Probation {
        ms,
        five_xx_pct: 0,
        standby,
    };
    ChildMsg::HelloProbation(hello, probation)
}

fn hello(calls_ready: bool, lameduck_ms: u64) -> ChildMsg {
    ChildMsg::Hello(ChildHello {
        name: NAME.to_string(),
        pid: 0,
        calls_ready,
        settle_ms: 250,
        ready_timeout_ms: 30_000,
        lameduck_ms,
    })
}

/// What the driver saw of one child.
#[derive(Debug, Default, Clone)]
struct Proc {
    pid: u32,
    /// What the supervisor sent it.
    said: Vec<SupervisorMsg>,
    hello: bool,
    exited: bool,
    reaped: bool,
    killed: bool,
}

/// Plays the shell and the kernel around a machine, and checks every effect.
struct Driver {
    m: Machine,
    now: Time,
    procs: BTreeMap<ChildId, Proc>,
    next_pid: u32,
    fail_spawns: bool,
    /// Failed spawns fail as a build still open for writing does (`ETXTBSY`).
    busy_spawns: bool,
    /// Times the watch for builds was asked to look again.
    watched_again: usize,
    /// The path and arguments of the reload being prepared.
    preparing: bool,
    prepare: Option<(PathBuf, Vec<OsString>)>,
    /// A stop was asked for (a request or a signal): the only way dev mode ends.
    stop_asked: bool,
    next_client: u64,
    asked: BTreeSet<ClientId>,
    gone: BTreeSet<ClientId>,
    answers: BTreeMap<ClientId, Vec<Response>>,
    /// What each client was told before its answer.
    interims: BTreeMap<ClientId, Vec<Response>>,
    stop_clients: BTreeSet<ClientId>,
    logs: Vec<String>,
    spawns: usize,
    stopping_since: Option<Time>,
    /// The longest lameduck any child declared (capped), to bound a stop's time.
    longest_lameduck: u64,
    /// Probes asked for and not answered yet.
    probing: usize,
    /// Probes answered yes: every other binary reads state version 2, the others
    /// only version 1 (a binary of an earlier release).
    probed_yes: u64,
    /// An exec was asked for, writing this state version, and has not been carried
    /// out.
    exec: Option<u16>,
    /// Times the supervisor was re-executed.
    execs: u64,
    conns: Conns,
    states: States,
    model: Model,
    /// A process the service left behind cannot be ended.
    descendants_stuck: bool,
    /// The descendants were ended (once, after the last child).
    descendants_ended: bool,
}

/// What the driver saw of connections handed over between children: each is known by
/// its sender and the sender's id for it.
#[derive(Debug, Default)]
struct Conns {
    next: u64,
    /// Handed over, the sender waiting for the word (taken or returned).
    waiting: BTreeSet<(ChildId, u64)>,
    /// Handed over in the input being handled: each is forwarded, returned or held in
    /// the same step (the shell holds its fd until then).
    deciding: BTreeSet<(ChildId, u64)>,
    /// Held by the supervisor while as many as the cap are on their way: each is
    /// forwarded or returned later, or forgotten with its sender.
    held: BTreeSet<(ChildId, u64)>,
    /// Forwarded, by the supervisor's id: the connection and its receiver.
    forwarded: BTreeMap<u64, ((ChildId, u64), ChildId)>,
    /// Handed in and not answered for yet, by receiver (the supervisor's ids).
    inbox: BTreeMap<ChildId, Vec<u64>>,
    /// Taken by their receiver, which serves them from then on.
    adopted: BTreeSet<(ChildId, u64)>,
    /// Given back to their sender, which serves them to the end.
    returned: BTreeSet<(ChildId, u64)>,
    /// Forgotten by an upgrade: their senders close their copies at the end of their
    /// lameduck.
    forgotten: BTreeSet<(ChildId, u64)>,
    /// The children told of a successor that adopts connections.
    told: Vec<ChildId>,
    /// The receivers whose room the shell was asked to measure, in order.
    measured: Vec<ChildId>,
}

/// What the driver saw of program states on their way between children.
#[derive(Debug, Default)]
struct States {
    /// How many fds of each state message of each child the shell holds, one entry a
    /// message, oldest first (as `Parcels` holds them): the machine relays or drops
    /// each in the step it came in.
    held: BTreeMap<ChildId, VecDeque<usize>>,
    /// The giver each asker was asked of (from `StateWanted`), by asker.
    givers: BTreeMap<ChildId, ChildId>,
    /// How many times each child asked for a state.
    asks: BTreeMap<ChildId, usize>,
    /// What each asker was sent of its asks: heads (not updates) and `NoState`s.
    answers: BTreeMap<ChildId, (usize, usize)>,
    /// The named fds each receiver still expects after the last head relayed to it.
    expecting: BTreeMap<ChildId, u32>,
    /// Transfers committed, and relays carried out.
    committed: usize,
    relayed: usize,
}

/// The reference model: what a user of the supervisor must see, in a few lines, from
/// nothing but what was asked and what came out (never the machine's insides). The
/// driver feeds it every request, signal and effect, and it is checked after every
/// step of every sequence.
#[derive(Debug, Default)]
struct Model {
    /// A stop was asked for: a `stop` request, SIGTERM or SIGINT.
    stop: bool,
    /// The listeners were closed, the last step of the supervisor's life.
    closed: bool,
    /// The supervisor is done, with this exit code.
    done: Option<i32>,
    /// How many answers each client got.
    answers: BTreeMap<ClientId, usize>,
    /// The `stop` requests, and the code each was answered with.
    stops: BTreeMap<ClientId, Option<i32>>,
}

impl Model {
    fn asked(&mut self, client: ClientId, request: &Request) {
        if *request == Request::Stop {
            self.stop = true;
            self.stops.insert(client, None);
        }
    }

    fn saw(&mut self, effect: &Effect) {
        // Nothing serves after done: the step that ends the supervisor is its last.
        assert!(
            self.done.is_none(),
            "{effect:?} after the supervisor was done"
        );
        match effect {
            // A stop always wins: once asked, nothing new starts or is given listeners.
            Effect::Spawn { .. } => {
                assert!(!self.stop, "a child started after a stop was asked");
                assert!(!self.closed, "a child started after the listeners closed");
            }
            Effect::Welcome { .. } | Effect::Forward { .. } => {
                assert!(!self.closed, "{effect:?} after the listeners closed");
            }
            Effect::Close => self.closed = true,
            // An interim response comes before the answer, and only to a reload or an
            // upgrade.
            Effect::Interim { client, response } => {
                assert_eq!(
                    self.answers.get(client).copied().unwrap_or(0),
                    0,
                    "{response:?} to {client:?} after its answer"
                );
                assert!(matches!(response, Response::OnProbation { .. }));
                assert!(!self.stop, "{response:?} after a stop was asked");
            }
            // Every command is answered once; after a stop, no reload or upgrade is
            // reported done.
            Effect::Answer { client, response } => {
                let count = self.answers.entry(*client).or_default();
                *count += 1;
                assert_eq!(*count, 1, "{client:?} answered twice");
                if let Some(code) = self.stops.get_mut(client) {
                    let Response::Stopped { code: said } = response else {
                        panic!("a stop answered {response:?}");
                    };
                    *code = Some(*said);
                }
                if self.stop {
                    assert!(
                        !matches!(response, Response::Reloaded { .. } | Response::Upgraded(_)),
                        "{response:?} after a stop was asked"
                    );
                }
            }
            Effect::Metrics { client } => {
                let count = self.answers.entry(*client).or_default();
                *count += 1;
                assert_eq!(*count, 1, "{client:?} answered twice");
            }
            _ => {}
        }
    }

    /// After each step: once done, the listeners are closed and every stop was
    /// answered with the supervisor's exit code.
    fn after_step(&mut self, done: Option<i32>) {
        if let Some(code) = done {
            assert!(self.closed, "done with the listeners open");
            for (client, said) in &self.stops {
                if let Some(said) = said {
                    assert_eq!(*said, code, "stop of {client:?}");
                }
            }
        }
        self.done = done;
    }

    /// At the end: every client that stayed was answered, exactly once.
    fn finish(&self, asked: &BTreeSet<ClientId>, gone: &BTreeSet<ClientId>) {
        for client in asked.difference(gone) {
            assert_eq!(
                self.answers.get(client),
                Some(&1),
                "{client:?} never answered"
            );
        }
    }
}

impl Driver {
    fn new(settings: Settings) -> Driver {
        let lameduck = settings.lameduck_ms;
        let m = Machine::new(
            settings,
            1,
            SystemTime::UNIX_EPOCH,
            Vec::new(),
            program("/bin/v1", 1),
            0,
        );
        let mut d = Driver {
            m,
            now: 0,
            procs: BTreeMap::new(),
            next_pid: 100,
            fail_spawns: false,
            busy_spawns: false,
            watched_again: 0,
            preparing: false,
            prepare: None,
            stop_asked: false,
            next_client: 0,
            asked: BTreeSet::new(),
            gone: BTreeSet::new(),
            answers: BTreeMap::new(),
            interims: BTreeMap::new(),
            stop_clients: BTreeSet::new(),
            logs: Vec::new(),
            spawns: 0,
            stopping_since: None,
            longest_lameduck: lameduck,
            probing: 0,
            probed_yes: 0,
            exec: None,
            execs: 0,
            conns: Conns::default(),
            states: States::default(),
            model: Model::default(),
            descendants_stuck: false,
            descendants_ended: false,
        };
        d.drain(false);
        d.check();
        d
    }

    fn stopping(&self) -> bool {
        matches!(
            self.m.state().lifecycle,
            Lifecycle::Stopping(_) | Lifecycle::Ending { .. } | Lifecycle::Done { .. }
        )
    }

    /// Feeds one input, carries out what follows, checks the promises.
    fn input(&mut self, input: Input) {
        if matches!(input, Input::Signal(Signal::Term | Signal::Int)) {
            self.stop_asked = true;
            self.model.stop = true;
        }
        if let Input::Request { client, request } = &input {
            self.model.asked(*client, request);
        }
        let held = match &input {
            Input::Message {
                child,
                msg: ChildMsg::StateGive(head),
            } => Some((*child, usize::from(head.size > 0))),
            Input::Message {
                child,
                msg: ChildMsg::StateFds(names),
            } => Some((*child, names.len())),
            Input::StateCut { child, .. } => Some((*child, 0)),
            _ => None,
        };
        if let Some((child, fds)) = held {
            self.states.held.entry(child).or_default().push_back(fds);
        }
        if let Input::Message {
            child,
            msg: ChildMsg::StateAsk { .. },
        } = &input
        {
            *self.states.asks.entry(*child).or_default() += 1;
        }
        let was_stopping = self.stopping();
        self.m.handle(input, self.now);
        self.drain(was_stopping);
        // Each state message is relayed or dropped in the step it came in, so the
        // shell holds no fd between two steps.
        for (child, queue) in &self.states.held {
            assert!(
                queue.is_empty(),
                "{child:?}'s state fds still held: {queue:?}"
            );
        }
        self.check();
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now.saturating_add(ms);
        let was_stopping = self.stopping();
        self.m.handle_timeout(self.now);
        self.drain(was_stopping);
        self.check();
    }

    fn client(&mut self) -> ClientId {
        self.next_client += 1;
        let client = ClientId(self.next_client);
        self.asked.insert(client);
        client
    }

    fn request(&mut self, request: Request) -> ClientId {
        let client = self.client();
        if request == Request::Stop {
            self.stop_clients.insert(client);
            self.stop_asked = true;
        }
        self.input(Input::Request { client, request });
        client
    }

    fn reload(&mut self, path: &str) -> ClientId {
        self.request(Request::Reload(ReloadRequest {
            path: path.as_bytes().to_vec(),
            args: None,
            listeners: Vec::new(),
        }))
    }

    fn upgrade(&mut self, path: &str) -> ClientId {
        self.request(Request::Upgrade(ReloadRequest {
            path: path.as_bytes().to_vec(),
            args: None,
            listeners: Vec::new(),
        }))
    }

    /// Whether the effects waiting (taken) include a recall.
    fn recalled(&mut self) -> bool {
        std::iter::from_fn(|| self.m.poll_effect()).any(|e| {
            matches!(
                e,
                Effect::Send {
                    msg: SupervisorMsg::Recall(_),
                    ..
                }
            )
        })
    }

    /// Answers the probe asked for, if any: every other yes reads state version 2.
    fn probed(&mut self, ok: bool) {
        let result = if ok {
            self.probed_yes += 1;
            Ok(1 + (self.probed_yes % 2) as u16)
        } else {
            Err("no".to_string())
        };
        self.probe_answer(result);
    }

    /// Answers the probe asked for, if any, with `result`.
    fn probe_answer(&mut self, result: Result<u16, String>) {
        if self.probing == 0 {
            return;
        }
        self.probing -= 1;
        self.input(Input::Probed { result });
    }

    /// The journal's promises: at most its length, numbers that ascend and never
    /// repeat, an event under way exactly while a reload, a probation or an upgrade is,
    /// parts only for children in the table, and the journal and the counts read back
    /// the same through state version 5.
    fn check_journal(&self) {
        let state = self.m.state();
        let journal = &state.journal;
        assert!(journal.events.len() <= super::journal::JOURNAL_LEN);
        let seqs: Vec<u64> = journal.events.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert!(seqs.last().is_none_or(|last| *last < journal.next_seq));
        let busy = matches!(
            state.lifecycle,
            Lifecycle::Reloading(_) | Lifecycle::Probation(_) | Lifecycle::Upgrading(_)
        );
        assert_eq!(
            journal.under_way.is_some(),
            busy,
            "an event under way in {:?}",
            state.lifecycle
        );
        for child in journal.links.keys().chain(state.tally.reports.keys()) {
            assert!(state.children.contains_key(child), "{child:?} is gone");
        }
        let (j, t) = crate::supervisor::handover::journal_through_v5(state);
        assert_eq!(&j, journal, "the journal changed through version 5");
        assert_eq!(&t, &state.tally, "the counts changed through version 5");
    }

    /// Carries out the exec asked for, if any: the state crosses into a new machine
    /// (serialized and read back, as the handover does), or the exec fails.
    fn exec(&mut self, ok: bool) {
        let Some(state_version) = self.exec.take() else {
            return;
        };
        // The shell asks before it execs, as something may have come first (a stop).
        if !ok || !self.m.exec_wanted() {
            return self.input(Input::ExecFailed {
                reason: "no".to_string(),
            });
        }
        // As the shell does once what came meanwhile is in: what is held goes back.
        self.m.return_held();
        let was_stopping = self.stopping();
        self.drain(was_stopping);
        let mut state = crate::supervisor::handover::through_v1(self.m.state());
        // Version 4 carries the journal and the metrics' counts too.
        (state.journal, state.tally) =
            crate::supervisor::handover::journal_through_v4(self.m.state());
        let moves = if state_version >= 2 {
            crate::supervisor::handover::moves_through_v2(&self.m.moves_record())
        } else {
            // The next image knows nothing of connections on their way.
            let waiting = std::mem::take(&mut self.conns.waiting);
            self.conns.forgotten.extend(waiting);
            self.conns.forwarded.clear();
            self.conns.inbox.clear();
            MovesRecord::default()
        };
        self.m = Machine::resume(self.m.settings.clone(), state, moves);
        self.execs += 1;
        self.input(Input::Resumed);
    }

    fn prepared(&mut self, ok: bool, exe: FdKey) {
        if !self.preparing {
            return;
        }
        self.preparing = false;
        let (path, args) = self.prepare.take().expect("a prepare's path");
        if ok {
            self.input(Input::Prepared {
                program: ProgramRecord { path, args, exe },
                listeners: Vec::new(),
            });
        } else {
            self.input(Input::PrepareFailed {
                reason: "cannot open /bin/next".into(),
                counts: true,
            });
        }
    }

    fn msg(&mut self, child: ChildId, msg: ChildMsg) {
        if let ChildMsg::Hello(h) = &msg {
            self.longest_lameduck = self.longest_lameduck.max(declared(h.lameduck_ms));
        }
        self.input(Input::Message { child, msg });
    }

    fn exit(&mut self, child: ChildId, status: WaitStatus) {
        let p = self
            .procs
            .get_mut(&child)
            .expect("a child the machine started");
        assert!(!p.exited, "{child:?} exits twice");
        p.exited = true;
        // What it handed over and was not answered for closes with it; what was handed
        // in to it and not taken goes back to the senders.
        self.conns.waiting.retain(|(from, _)| *from != child);
        self.conns.held.retain(|(from, _)| *from != child);
        self.input(Input::Exited { child, status });
        self.conns.inbox.remove(&child);
        for ((from, id), to) in self.conns.forwarded.values() {
            if *to == child && !self.procs[from].exited {
                assert!(
                    !self.conns.waiting.contains(&(*from, *id)),
                    "{from:?}'s connection {id} was lost with {child:?}"
                );
            }
        }
    }

    /// `child` says it adopts connections of the listener `http`.
    fn adopts(&mut self, child: ChildId) {
        self.msg(
            child,
            ChildMsg::Adopts {
                listener: "http".into(),
            },
        );
    }

    /// `child` hands `n` idle connections over; each is forwarded or returned at once.
    fn hand(&mut self, child: ChildId, n: usize) -> Vec<u64> {
        let mut parcels = Vec::new();
        for _ in 0..n {
            self.conns.next += 1;
            let id = self.conns.next;
            self.conns.waiting.insert((child, id));
            self.conns.deciding.insert((child, id));
            parcels.push(Parcel {
                id,
                listener: "http".into(),
                bytes: Vec::new(),
            });
        }
        let ids = parcels.iter().map(|p| p.id).collect();
        self.msg(child, ChildMsg::Hand(parcels));
        // Neither forwarded nor returned: held, waiting for room on the way.
        let held = std::mem::take(&mut self.conns.deciding);
        self.conns.held.extend(held);
        ids
    }

    /// `child` takes (or declines) the first connection handed in to it.
    fn answer_first(&mut self, child: ChildId, take: bool) -> bool {
        let Some(ours) = self
            .conns
            .inbox
            .get_mut(&child)
            .and_then(|i| (!i.is_empty()).then(|| i.remove(0)))
        else {
            return false;
        };
        let (key, _) = self.conns.forwarded[&ours];
        if take {
            self.conns.adopted.insert(key);
            self.msg(child, ChildMsg::Adopted(vec![ours]));
        } else {
            self.msg(child, ChildMsg::Declined(vec![ours]));
        }
        true
    }

    /// The children that run (started, not exited).
    fn running(&self) -> Vec<ChildId> {
        self.procs
            .iter()
            .filter(|(_, p)| !p.exited)
            .map(|(id, _)| *id)
            .collect()
    }

    fn answer(&self, client: ClientId) -> Option<&Response> {
        self.answers.get(&client).and_then(|a| a.first())
    }

    /// Carries out the effects, answering spawns at once as the shell does.
    fn drain(&mut self, was_stopping: bool) {
        let mut spawned_now = false;
        while let Some(effect) = self.m.poll_effect() {
            self.model.saw(&effect);
            match effect {
                Effect::Spawn { child, .. } => {
                    assert!(!was_stopping, "a child was started while stopping");
                    assert!(!self.procs.contains_key(&child), "{child:?} started twice");
                    self.spawns += 1;
                    if self.fail_spawns {
                        self.m.handle(
                            Input::SpawnFailed {
                                child,
                                reason: "cannot start: no".into(),
                                busy: self.busy_spawns,
                            },
                            self.now,
                        );
                    } else {
                        spawned_now = true;
                        self.next_pid += 1;
                        self.procs.insert(
                            child,
                            Proc {
                                pid: self.next_pid,
                                ..Proc::default()
                            },
                        );
                        self.m.handle(
                            Input::Spawned {
                                child,
                                pid: self.next_pid,
                                started: SystemTime::UNIX_EPOCH,
                            },
                            self.now,
                        );
                    }
                }
                Effect::Interim { client, response } => {
                    assert!(self.asked.contains(&client), "interim to a stranger");
                    self.interims.entry(client).or_default().push(response);
                }
                Effect::Welcome { child, .. } => {
                    let p = self
                        .procs
                        .get_mut(&child)
                        .expect("welcome to a known child");
                    assert!(!p.reaped, "welcome to a reaped child");
                    assert!(!p.hello, "a second welcome");
                    p.hello = true;
                }
                Effect::Send { child, msg } => {
                    let p = self.procs.get_mut(&child).expect("send to a known child");
                    assert!(!p.reaped, "send to a reaped child");
                    p.said.push(msg.clone());
                    match msg {
                        SupervisorMsg::Taken(ids) => {
                            for id in ids {
                                let key = (child, id);
                                assert!(
                                    self.conns.adopted.contains(&key),
                                    "{key:?} told taken, and its receiver did not take it"
                                );
                                assert!(self.conns.waiting.remove(&key), "{key:?} answered twice");
                            }
                        }
                        SupervisorMsg::Successor { .. } => self.conns.told.push(child),
                        SupervisorMsg::StateWanted { successor } => {
                            let asker = (self.procs.iter())
                                .find(|(_, p)| p.pid == successor)
                                .map(|(id, _)| *id)
                                .expect("the state wanted by a known child");
                            assert_ne!(asker, child, "a child asked for its own state");
                            self.states.givers.insert(asker, child);
                        }
                        SupervisorMsg::NoState { reason } => {
                            let asks = self.states.asks.get(&child).copied().unwrap_or(0);
                            let answers = self.states.answers.entry(child).or_default();
                            answers.1 += 1;
                            assert!(
                                answers.1 <= asks,
                                "{child:?} told more often than it asked that there is no state"
                            );
                            // A second ask is refused on its own: the transfer under way,
                            // and the fds its head announced, go on.
                            let twice = reason.as_deref().is_some_and(|r| r.contains("twice"));
                            if !twice {
                                self.states.expecting.remove(&child);
                            }
                        }
                        SupervisorMsg::StateDone { committed: true } => {
                            let asker = (self.states.givers.iter().rev())
                                .find(|(_, giver)| **giver == child)
                                .map(|(asker, _)| *asker)
                                .expect("a commit to a child that was asked");
                            let state = self.m.state();
                            assert_eq!(
                                state.serving_id(),
                                Some(asker),
                                "committed to {asker:?}, which does not serve"
                            );
                            assert!(
                                !matches!(state.lifecycle, Lifecycle::Probation(_)),
                                "committed during a probation"
                            );
                            self.states.committed += 1;
                        }
                        SupervisorMsg::Recall(ids) => {
                            for id in ids {
                                let (_, to) = self.conns.forwarded[&id];
                                assert_eq!(to, child, "recalled from another child");
                            }
                        }
                        _ => {}
                    }
                }
                Effect::Forward { from, to, parcels } => {
                    assert_ne!(from, to, "handed back to its sender");
                    let p = &self.procs[&to];
                    assert!(!p.reaped && !p.exited, "forwarded to a child that is gone");
                    assert!(!parcels.is_empty());
                    for (theirs, parcel) in parcels {
                        let key = (from, theirs);
                        assert!(
                            self.conns.deciding.remove(&key) || self.conns.held.remove(&key),
                            "{key:?} forwarded twice"
                        );
                        assert!(
                            self.conns.forwarded.insert(parcel.id, (key, to)).is_none(),
                            "two connections forwarded as {}",
                            parcel.id
                        );
                        self.conns.inbox.entry(to).or_default().push(parcel.id);
                    }
                }
                Effect::RelayState { from, to, msg } => {
                    let fds = (self.states.held.get_mut(&from))
                        .and_then(VecDeque::pop_front)
                        .unwrap_or_else(|| panic!("{from:?}'s state relayed with nothing held"));
                    assert_ne!(from, to, "a state relayed to its giver");
                    let giver_pid = self.procs[&from].pid;
                    let p = self.procs.get_mut(&to).expect("a relay to a known child");
                    assert!(!p.reaped, "a state relayed to a reaped child");
                    match &msg {
                        SupervisorMsg::State(head) => {
                            assert_eq!(fds, usize::from(head.size > 0), "a head with its file");
                            assert_eq!(head.from, giver_pid, "the head names its giver");
                            if !head.update {
                                let asks = self.states.asks.get(&to).copied().unwrap_or(0);
                                let answers = self.states.answers.entry(to).or_default();
                                answers.0 += 1;
                                assert!(
                                    answers.0 <= asks,
                                    "{to:?} relayed more states than it asked for"
                                );
                            }
                            assert_eq!(
                                self.states.expecting.get(&to).copied().unwrap_or(0),
                                0,
                                "a head relayed before the fds of the last one"
                            );
                            self.states.expecting.insert(to, head.fds);
                        }
                        SupervisorMsg::StateFds(names) => {
                            assert_eq!(fds, names.len(), "one fd a name");
                            let left = self.states.expecting.entry(to).or_default();
                            assert!(
                                names.len() as u32 <= *left,
                                "more fds relayed than the head said"
                            );
                            *left -= names.len() as u32;
                        }
                        other => panic!("relayed {other:?}"),
                    }
                    p.said.push(msg);
                    self.states.relayed += 1;
                }
                Effect::DropState { from } => {
                    (self.states.held.get_mut(&from))
                        .and_then(VecDeque::pop_front)
                        .unwrap_or_else(|| panic!("{from:?}'s state dropped with nothing held"));
                }
                Effect::MeasureRoom { child } => {
                    assert!(
                        self.m.state.children.contains_key(&child),
                        "the room of a child that is gone"
                    );
                    self.conns.measured.push(child);
                }
                Effect::Return { child, ids } => {
                    let p = &self.procs[&child];
                    assert!(!p.reaped, "returned to a reaped child");
                    for id in ids {
                        let key = (child, id);
                        self.conns.deciding.remove(&key);
                        self.conns.held.remove(&key);
                        assert!(
                            !self.conns.adopted.contains(&key),
                            "{key:?} returned to its sender after its receiver took it: two processes serve it"
                        );
                        assert!(self.conns.waiting.remove(&key), "{key:?} answered twice");
                        self.conns.returned.insert(key);
                    }
                }
                Effect::Kill { child } => {
                    let p = self.procs.get_mut(&child).expect("kill of a known child");
                    assert!(!p.reaped, "{child:?}'s group signalled after it was reaped");
                    p.killed = true;
                }
                Effect::Reap { child } => {
                    let p = self.procs.get_mut(&child).expect("reap of a known child");
                    assert!(p.exited, "{child:?} reaped before it exited");
                    assert!(!p.reaped, "{child:?} reaped twice");
                    p.reaped = true;
                }
                Effect::Prepare { path, args, .. } => {
                    assert!(!self.preparing, "two reloads prepared at once");
                    self.preparing = true;
                    self.prepare = Some((path, args));
                }
                Effect::Answer { client, response } => {
                    assert!(
                        self.asked.contains(&client),
                        "answer to {client:?}, who never asked"
                    );
                    let answers = self.answers.entry(client).or_default();
                    answers.push(response);
                    assert_eq!(answers.len(), 1, "{client:?} answered twice: {answers:?}");
                }
                Effect::Metrics { client } => {
                    assert!(self.asked.contains(&client), "metrics to a stranger");
                    let answers = self.answers.entry(client).or_default();
                    answers.push(Response::Metrics {
                        text: String::new(),
                    });
                    assert_eq!(answers.len(), 1, "{client:?} answered twice: {answers:?}");
                }
                Effect::Log(_, text) => self.logs.push(text),
                Effect::Notify(_) | Effect::Close => {}
                Effect::EndDescendants => {
                    assert!(!self.descendants_ended, "descendants ended twice");
                    self.descendants_ended = true;
                    let ended = !self.descendants_stuck;
                    self.m.handle(Input::DescendantsEnded { ended }, self.now);
                }
                Effect::WatchBuildAgain => {
                    assert!(
                        self.m.settings.dev,
                        "a build watched again outside dev mode"
                    );
                    self.watched_again += 1;
                }
                Effect::Probe { .. } => {
                    assert_eq!(self.probing, 0, "two probes at once");
                    self.probing += 1;
                }
                Effect::Exec { state_version, .. } => {
                    assert!(self.exec.is_none(), "two execs at once");
                    assert!(!self.stopping(), "an exec while stopping");
                    assert!(self.m.moves.held() == 0, "an exec with connections held");
                    self.exec = Some(state_version);
                }
            }
        }
        if self.stopping() {
            assert!(!spawned_now, "a child was started in the step that stopped");
            self.stopping_since.get_or_insert(self.now);
        }
    }

    /// The promises that hold after every step.
    fn check(&mut self) {
        self.model.after_step(self.m.done());
        let known: BTreeSet<ChildId> = self.m.children().map(|c| c.id).collect();
        for (id, p) in &self.procs {
            if p.exited {
                assert!(p.reaped, "{id:?} exited and was not reaped");
                assert!(!known.contains(id), "{id:?} reaped and still known");
            } else {
                assert!(known.contains(id), "{id:?} runs and the machine forgot it");
            }
        }
        for id in &known {
            assert!(
                self.procs.contains_key(id),
                "{id:?} is known but never started"
            );
        }
        for c in self.m.children() {
            let p = &self.procs[&c.id];
            assert_eq!(c.pid, p.pid);
        }
        let state = self.m.state();
        if self.m.settings.dev {
            assert!(
                !self.stopping() || self.stop_asked,
                "dev mode ended without a stop: {:?}",
                state.lifecycle
            );
            assert!(
                !matches!(state.lifecycle, Lifecycle::BackingOff { .. }),
                "dev mode waits to restart a child on its own: {:?}",
                state.lifecycle
            );
        }
        if let (Some(a), Some(b)) = (state.serving_id(), state.incoming_id()) {
            assert_ne!(a, b);
        }
        // Every name the lifecycle gives a child is of a child in the table.
        for id in [state.serving_id(), state.incoming_id()]
            .into_iter()
            .flatten()
        {
            assert!(state.children.contains_key(&id), "{id:?} named, not known");
        }
        // The timer table holds exactly the deadline each child's life has, the
        // restart's while backing off, the re-execution's only while upgrading, and a
        // recall only for a connection on its way.
        for (timer, _) in state.timers.iter() {
            if let Some(id) = timer.child() {
                let life = state.children.get(&id).map(|c| c.life);
                assert_eq!(
                    life.and_then(|l| l.timer(id)),
                    Some(timer),
                    "{timer:?} for a child whose life is {life:?}"
                );
            }
            match timer {
                Timer::Restart => assert!(
                    matches!(state.lifecycle, Lifecycle::BackingOff { .. }),
                    "a restart is due in {:?}",
                    state.lifecycle
                ),
                Timer::Exec => assert!(self.m.exec_wanted(), "an exec is due, unwanted"),
                Timer::Recall(ours) => assert!(self.m.moves.carries(ours)),
                Timer::StateAnswer(asker) => assert!(
                    self.m.transfers.awaits(asker),
                    "a state's answer is due for {asker:?}, which waits for none"
                ),
                _ => {}
            }
        }
        for child in state.children.values() {
            if let Some(timer) = child.life.timer(child.id) {
                assert!(
                    state.timers.get(timer).is_some(),
                    "{:?} is {:?} with no deadline",
                    child.id,
                    child.life
                );
            }
        }
        if matches!(state.lifecycle, Lifecycle::BackingOff { .. }) {
            assert!(
                state.timers.get(Timer::Restart).is_some(),
                "backing off for ever"
            );
        }
        assert!(
            self.m.moves.on_way_counted(),
            "the count of connections on their way to each receiver drifted"
        );
        // Version 2's layout carries the moves: read back, they are the same.
        let record = self.m.moves_record();
        assert_eq!(
            crate::supervisor::handover::moves_through_v2(&record),
            record,
            "the moves changed through version 2"
        );
        // At most one child serves: during a probation the old one stands by, and only
        // then.
        let ready = state.children.values().filter(|c| c.life == Life::Ready);
        assert!(
            ready.count() <= 1,
            "two children serve: {:?}",
            state.children
        );
        let standing: Vec<ChildId> = (state.children.values())
            .filter(|c| c.life == Life::Standby)
            .map(|c| c.id)
            .collect();
        assert!(
            standing.len() <= 1 && standing.first().copied() == state.standby_id(),
            "{standing:?} stand by in {:?}",
            state.lifecycle
        );
        let on_probation = matches!(state.lifecycle, Lifecycle::Probation(_));
        assert_eq!(
            state.timers.get(Timer::Probation).is_some(),
            on_probation,
            "the probation's end in {:?}",
            state.lifecycle
        );
        // Version 1's layout carries the whole state: read back, it is the same. (A
        // probation is never handed over: an upgrade re-executes after its child's
        // probation, and is refused during one.)
        if !on_probation {
            let bytes = crate::supervisor::handover::v1_bytes(state);
            let again = crate::supervisor::handover::through_v1(state);
            assert_eq!(
                crate::supervisor::handover::v1_bytes(&again),
                bytes,
                "the state changed through version 1: {:?}",
                state.lifecycle
            );
        }
        assert_eq!(
            state.upgrades, self.execs,
            "every exec counts, and only they"
        );
        self.check_journal();
        assert!(
            self.m.moves.in_transit() <= self.m.settings.move_cap,
            "more connections on their way than the cap"
        );
        // Held only while the way is full or the receiver has no room, and never past
        // the supervisor's exec.
        if !self.conns.held.is_empty() {
            assert!(
                self.m.moves.in_transit() == self.m.settings.move_cap
                    || self.m.serving_room() == Some(0),
                "connections held with room on the way and in the receiver: {:?}",
                self.conns.held
            );
        }
        for key in &self.conns.held {
            assert!(!self.procs[&key.0].exited, "held for a sender that is gone");
        }
        for key in &self.conns.waiting {
            assert!(
                !self.procs[&key.0].exited,
                "waiting for an answer to a child that is gone"
            );
        }
        if let Some(code) = self.m.done() {
            assert!(self.running().is_empty(), "done while children run");
            for client in &self.stop_clients {
                if !self.gone.contains(client) {
                    assert_eq!(
                        self.answer(*client),
                        Some(&Response::Stopped { code }),
                        "stop of {client:?}"
                    );
                }
            }
        }
    }

    /// Stops, lets every killed child exit and time pass, until the machine is done;
    /// then every request has been answered, exactly once.
    fn finish(&mut self) {
        let stop = self.request(Request::Stop);
        let asked_at = self.now;
        // A reload's binary opened after the stop is not started, and an upgrade's
        // probe or exec that ends after it changes nothing.
        self.prepared(true, 9);
        self.probed(true);
        let execs = self.execs;
        self.exec(true);
        assert_eq!(self.execs, execs, "an exec after the stop");
        for _ in 0..16 {
            if self.m.done().is_some() {
                break;
            }
            for child in self.running() {
                if self.procs[&child].killed {
                    self.exit(child, WaitStatus::Signal(9));
                }
            }
            if self.m.done().is_some() {
                break;
            }
            let next = self.m.next_deadline().unwrap_or(self.now);
            self.advance(next.saturating_sub(self.now).max(1));
        }
        let code = self.m.done().expect("the supervisor ends after a stop");
        assert!(
            self.now - asked_at <= self.longest_lameduck + 1,
            "the stop took {} ms; lameduck is at most {} ms",
            self.now - asked_at,
            self.longest_lameduck
        );
        assert_eq!(self.answer(stop), Some(&Response::Stopped { code }));
        for client in &self.asked {
            if !self.gone.contains(client) {
                assert!(self.answer(*client).is_some(), "{client:?} never answered");
            }
        }
        self.model.finish(&self.asked, &self.gone);
    }

    /// The one child in `Current`, which must be there.
    fn current(&self) -> ChildId {
        let state = self.m.state();
        match state.serving_id() {
            Some(id) => id,
            None => panic!("no serving child: {:?}", state.lifecycle),
        }
    }

    fn incoming(&self) -> ChildId {
        let state = self.m.state();
        match state.incoming_id() {
            Some(id) => id,
            None => panic!("no incoming child: {:?}", state.lifecycle),
        }
    }

    fn status(&mut self) -> Status {
        let client = self.request(Request::Status);
        match self.answer(client) {
            Some(Response::Status(status)) => (**status).clone(),
            other => panic!("status answered {other:?}"),
        }
    }

    /// Starts the first child and makes it ready (it calls `ready()`).
    fn serving(settings: Settings) -> (Driver, ChildId) {
        let mut d = Driver::new(settings);
        let first = d.current();
        d.msg(first, hello(true, 2_000));
        d.msg(first, ChildMsg::Ready);
        assert_eq!(d.status().state, "running");
        (d, first)
    }

    /// Reloads to a new child that declares a probation of `ms` and becomes ready;
    /// the reload's client, told so, waits for the verdict.
    fn on_probation(&mut self, ms: u64, standby: bool) -> (ClientId, ChildId) {
        let client = self.reload("/bin/next");
        self.prepared(true, 1);
        let new = self.incoming();
        self.msg(new, hello_probation(ms, standby));
        self.adopts(new);
        self.msg(new, ChildMsg::Ready);
        assert_eq!(self.answer(client), None);
        assert!(matches!(
            self.interims.get(&client).map(Vec::as_slice),
            Some([Response::OnProbation { ends_ms, .. }]) if *ends_ms == ms
        ));
        assert_eq!(self.status().state, "probation");
        (client, new)
    }

    /// What the supervisor sent `child`, in order.
    fn said(&self, child: ChildId) -> &[SupervisorMsg] {
        &self.procs[&child].said
    }

    /// The text of the failure `client` was answered with.
    fn failed(&self, client: ClientId) -> String {
        match self.answer(client) {
            Some(Response::Failed { reason }) => reason.clone(),
            other => panic!("{client:?} answered {other:?}"),
        }
    }

    /// Reloads to a new child that becomes ready.
    fn reloaded(&mut self) -> ChildId {
        let client = self.reload("/bin/next");
        self.prepared(true, 1);
        let new = self.incoming();
        self.msg(new, hello(true, 2_000));
        self.msg(new, ChildMsg::Ready);
        assert!(matches!(
            self.answer(client),
            Some(Response::Reloaded { .. })
        ));
        new
    }
}

// --- table tests --------------------------------------------------------------------

// Probation.

/// A serving child that can stand by.
fn serving_standing_by(settings: Settings) -> (Driver, ChildId) {
    let (mut d, first) = Driver::serving(settings);
    d.adopts(first);
    d.msg(first, ChildMsg::CanStandBy);
    (d, first)
}

#[test]
fn a_probation_that_runs_its_time_passes_and_only_then_the_old_child_winds_down() {
    let (mut d, first) = serving_standing_by(settings(false, true));
    let (client, new) = d.on_probation(30_000, true);
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Standby));
    assert!(
        d.said(first)
            .iter()
            .any(|m| matches!(m, SupervisorMsg::Successor { .. }))
    );
    let status = d.status();
    assert_eq!(status.standby_pid, Some(d.procs[&first].pid));
    assert_eq!(status.child_pid, Some(d.procs[&new].pid));
    assert_eq!(
        status.reloads, 0,
        "a reload counts once its probation passed"
    );
    assert_eq!(
        status.probation_ends.as_deref(),
        Some("1970-01-01T00:00:30.000Z")
    );
    assert!(d.logs.iter().any(|l| l.ends_with(&format!(
        "in 0 ms; on probation for 30 s; pid {} stands by",
        d.procs[&first].pid
    ))));
    d.advance(29_999);
    assert_eq!(d.answer(client), None);
    assert!(!d.said(first).contains(&SupervisorMsg::Lameduck));
    d.advance(1);
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Lameduck));
    assert!(matches!(d.answer(client), Some(Response::Reloaded { .. })));
    let status = d.status();
    assert_eq!((status.state.as_str(), status.reloads), ("running", 1));
    assert_eq!(status.standby_pid, None);
    assert_eq!(status.probation_ends, None);
    d.finish();
}

#[test]
fn a_new_child_that_crashes_on_probation_is_rolled_back_to_the_warm_old_one() {
    let (mut d, first) = serving_standing_by(settings(false, true));
    let (client, new) = d.on_probation(30_000, true);
    d.advance(3_200);
    d.exit(new, WaitStatus::Code(101));
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Resume));
    assert_eq!(d.current(), first);
    assert_eq!(
        d.failed(client),
        format!(
            "rolled back after 3.2 s of probation (warm): new child pid {} exited with code 101; pid {} serves again",
            d.procs[&new].pid, d.procs[&first].pid
        )
    );
    let status = d.status();
    assert_eq!(status.state, "running");
    assert_eq!((status.reloads, status.failures), (0, 1));
    assert_eq!(
        status.previous_path, None,
        "the fallback is as before the reload"
    );
    assert_eq!(d.spawns, 2, "no cold start");
    d.finish();
}

#[test]
fn an_unhealthy_new_child_hands_its_connections_back_and_winds_down() {
    let (mut d, first) = serving_standing_by(settings(false, true));
    let (client, new) = d.on_probation(30_000, true);
    d.msg(
        new,
        ChildMsg::Unhealthy {
            reason: "database unreachable".into(),
        },
    );
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Resume));
    let told = d.said(new);
    assert!(matches!(
        told[told.len() - 2],
        SupervisorMsg::Successor { .. }
    ));
    assert_eq!(told.last(), Some(&SupervisorMsg::Lameduck));
    assert!(
        d.failed(client)
            .contains("(warm): unhealthy: database unreachable; pid")
    );
    // An unhealthy child outside a probation is only said.
    d.msg(
        first,
        ChildMsg::Unhealthy {
            reason: "slow".into(),
        },
    );
    assert!(
        d.logs
            .last()
            .is_some_and(|l| l.contains("it is not on probation"))
    );
    assert_eq!(d.current(), first);
    d.finish();
}

#[test]
fn promote_and_rollback_end_a_probation_and_are_refused_without_one() {
    let (mut d, first) = serving_standing_by(settings(false, true));
    for request in [Request::Promote, Request::Rollback] {
        let client = d.request(request);
        assert_eq!(
            d.answer(client),
            Some(&Response::Refused {
                reason: "no reload is on probation".into()
            })
        );
    }
    let (reload, new) = d.on_probation(30_000, true);
    d.advance(3_100);
    let promote = d.request(Request::Promote);
    assert_eq!(
        d.answer(promote),
        Some(&Response::Promoted {
            pid: d.procs[&new].pid,
            after_ms: 3_100
        })
    );
    assert!(matches!(d.answer(reload), Some(Response::Reloaded { .. })));
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Lameduck));
    d.exit(first, WaitStatus::Code(0));
    // The next reload's new child stands by in its turn, and the operator rolls back.
    d.msg(new, ChildMsg::CanStandBy);
    let (reload, newer) = d.on_probation(30_000, true);
    let rollback = d.request(Request::Rollback);
    assert_eq!(
        d.answer(rollback),
        Some(&Response::RolledBack {
            pid: d.procs[&new].pid
        })
    );
    assert!(
        d.failed(reload)
            .contains("(warm): rolled back by the operator; pid")
    );
    assert_eq!(d.said(newer).last(), Some(&SupervisorMsg::Lameduck));
    d.finish();
}

#[test]
fn a_reload_upgrade_or_sighup_during_a_probation_is_refused_and_names_the_way_out() {
    let (mut d, _) = serving_standing_by(settings(false, true));
    let (_, new) = d.on_probation(30_000, true);
    d.advance(17_500);
    let pid = d.procs[&new].pid;
    let refusal = format!(
        "pid {pid} is on probation for 13 s more: wait, or run --littleboss=promote or --littleboss=rollback"
    );
    let reload = d.reload("/bin/other");
    assert_eq!(
        d.answer(reload),
        Some(&Response::Refused {
            reason: refusal.clone()
        })
    );
    let upgrade = d.upgrade("/bin/other");
    assert_eq!(
        d.answer(upgrade),
        Some(&Response::Refused {
            reason: refusal.clone()
        })
    );
    let spawns = d.spawns;
    d.input(Input::Signal(Signal::Hup));
    assert_eq!(d.spawns, spawns);
    assert_eq!(d.status().state, "probation");
    d.finish();
}

#[test]
fn a_stop_during_a_probation_stops_both_children_with_the_new_one_s_code() {
    let (mut d, first) = serving_standing_by(settings(false, true));
    let (client, new) = d.on_probation(30_000, true);
    let stop = d.request(Request::Stop);
    assert!(d.failed(client).contains("is stopping"));
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Lameduck));
    assert_eq!(d.said(new).last(), Some(&SupervisorMsg::Lameduck));
    d.exit(first, WaitStatus::Code(0));
    d.exit(new, WaitStatus::Code(3));
    assert_eq!(d.m.done(), Some(3));
    assert_eq!(d.answer(stop), Some(&Response::Stopped { code: 3 }));
}

#[test]
fn without_a_child_standing_by_a_rollback_starts_the_previous_binary_cold() {
    // The old child did not say it can stand by: it winds down at once.
    let (mut d, first) = Driver::serving(settings(false, true));
    let (client, new) = d.on_probation(30_000, true);
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Lameduck));
    d.exit(first, WaitStatus::Code(0));
    d.msg(
        new,
        ChildMsg::Unhealthy {
            reason: "bad config".into(),
        },
    );
    // The new child serves until the previous binary is ready.
    assert_eq!(d.status().state, "reloading");
    assert_eq!(d.current(), new);
    let cold = d.incoming();
    d.msg(cold, hello_probation(30_000, true));
    d.msg(cold, ChildMsg::Ready);
    assert_eq!(d.current(), cold, "the rollback's child has no probation");
    assert_eq!(
        d.failed(client),
        format!(
            "rolled back after 0 s of probation (cold): unhealthy: bad config; pid {} serves again",
            d.procs[&cold].pid
        )
    );
    assert_eq!(d.said(new).last(), Some(&SupervisorMsg::Lameduck));
    let status = d.status();
    assert_eq!((status.reloads, status.failures), (0, 1));
    assert_eq!(status.child_path.as_deref(), Some("/bin/v1"));
    d.finish();
}

#[test]
fn a_standby_child_that_dies_makes_the_rollback_cold_and_a_dead_new_child_falls_back() {
    let (mut d, first) = serving_standing_by(settings(false, true));
    let (client, new) = d.on_probation(30_000, true);
    d.exit(first, WaitStatus::Signal(9));
    assert_eq!(d.status().state, "probation");
    assert_eq!(d.status().standby_pid, None);
    assert!(
        d.logs
            .iter()
            .any(|l| l.contains("while standing by; the probation goes on"))
    );
    d.exit(new, WaitStatus::Code(101));
    // Nothing serves until the previous binary is ready.
    let cold = d.incoming();
    d.msg(cold, hello(true, 2_000));
    d.msg(cold, ChildMsg::Ready);
    assert!(d.failed(client).contains("(cold): new child pid"));
    assert_eq!(d.current(), cold);
    d.finish();
}

#[test]
fn with_fallback_off_and_nothing_standing_by_a_failed_probation_keeps_the_new_child() {
    let (mut d, first) = Driver::serving(settings(false, false));
    let (client, new) = d.on_probation(30_000, false);
    d.exit(first, WaitStatus::Code(0));
    let rollback = d.request(Request::Rollback);
    let reason = d.failed(client);
    assert!(
        reason.ends_with(&format!(
            "nothing to roll back to (fallback = false): pid {} serves on",
            d.procs[&new].pid
        )),
        "{reason}"
    );
    assert!(matches!(d.answer(rollback), Some(Response::Failed { .. })));
    assert_eq!(d.current(), new);
    assert_eq!(d.status().state, "running");
    d.finish();
}

#[test]
fn standby_false_winds_the_old_child_down_even_if_it_could_stand_by() {
    let (mut d, first) = serving_standing_by(settings(false, true));
    let (_, _) = d.on_probation(30_000, false);
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Lameduck));
    assert_eq!(d.status().standby_pid, None);
    d.finish();
}

#[test]
fn an_upgrade_re_executes_only_after_its_child_s_probation_passed() {
    let (mut d, first) = serving_standing_by(settings(false, true));
    let client = d.upgrade("/bin/next");
    d.prepared(true, 1);
    d.probed(true);
    let new = d.incoming();
    d.msg(new, hello_probation(5_000, true));
    d.msg(new, ChildMsg::Ready);
    assert_eq!(d.status().state, "probation");
    assert_eq!(d.probing, 0, "not asked to take over yet");
    assert!(matches!(
        d.interims.get(&client).map(Vec::as_slice),
        Some([Response::OnProbation { .. }])
    ));
    d.advance(5_000);
    assert_eq!(d.status().state, "upgrading");
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Lameduck));
    d.probed(true);
    d.exit(first, WaitStatus::Code(0));
    d.exec(true);
    assert!(matches!(d.answer(client), Some(Response::Upgraded(_))));
    d.finish();
}

#[test]
fn a_child_of_an_earlier_protocol_has_no_probation_and_dev_mode_has_none() {
    let (mut d, _) = serving_standing_by(settings(false, true));
    let new = d.reloaded();
    assert_eq!(d.current(), new);
    let (mut d, _) = Driver::serving(dev());
    d.build();
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello_probation(30_000, true));
    d.msg(new, ChildMsg::Ready);
    assert_eq!(d.status().state, "running");
}

#[test]
fn start_ready_stop() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let stop = d.request(Request::Stop);
    assert_eq!(d.status().state, "stopping");
    assert_eq!(d.answer(stop), None);
    d.exit(first, WaitStatus::Code(0));
    assert_eq!(d.m.done(), Some(0));
    assert_eq!(d.answer(stop), Some(&Response::Stopped { code: 0 }));
    assert!(d.logs.iter().any(|l| l == "stopped, exit code 0"));
}

#[test]
fn a_settling_child_is_ready_after_its_settle_time() {
    let mut d = Driver::new(settings(false, true));
    let first = d.current();
    d.msg(first, hello(false, 2_000));
    d.advance(249);
    assert_eq!(d.status().state, "starting");
    d.advance(1);
    assert_eq!(d.status().state, "running");
}

#[test]
fn a_reload_overlaps_and_the_old_child_gets_lameduck_when_the_new_is_ready() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let client = d.reload("/bin/next");
    assert_eq!(d.status().state, "reloading");
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello(true, 2_000));
    assert!(d.answer(client).is_none());
    d.msg(new, ChildMsg::Ready);
    assert_eq!(
        d.answer(client),
        Some(&Response::Reloaded {
            old_pid: Some(d.procs[&first].pid),
            new_pid: d.procs[&new].pid,
            ms: 0
        })
    );
    assert_eq!(d.current(), new);
    // The old child is killed after its lameduck time if it has not exited.
    d.advance(2_000);
    assert!(d.procs[&first].killed);
    d.exit(first, WaitStatus::Signal(9));
    let status = d.status();
    assert_eq!((status.state.as_str(), status.reloads), ("running", 1));
    assert_eq!(status.previous_path.as_deref(), Some("/bin/v1"));
}

#[test]
fn a_second_reload_is_refused_while_one_is_under_way() {
    let (mut d, _) = Driver::serving(settings(false, true));
    d.reload("/bin/next");
    // Asked while the first one's binary is being opened: refused once its child runs,
    // naming it.
    let second = d.reload("/bin/other");
    assert_eq!(d.answer(second), None);
    d.prepared(true, 1);
    let pid = d.procs[&d.incoming()].pid;
    let Some(Response::Failed { reason }) = d.answer(second) else {
        panic!("{:?}", d.answer(second))
    };
    assert_eq!(
        reason,
        &format!("another reload is under way (new child pid {pid}); try again when it has ended")
    );
    let third = d.reload("/bin/third");
    assert!(matches!(d.answer(third), Some(Response::Failed { .. })));
    d.finish();
}

#[test]
fn a_reload_queued_behind_one_that_fails_to_open_goes_ahead() {
    let (mut d, _) = Driver::serving(settings(false, true));
    let first = d.reload("/bin/missing");
    let second = d.reload("/bin/next");
    d.prepared(false, 0);
    assert!(matches!(d.answer(first), Some(Response::Failed { .. })));
    assert_eq!(d.status().state, "reloading");
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello(true, 0));
    d.msg(new, ChildMsg::Ready);
    assert!(matches!(d.answer(second), Some(Response::Reloaded { .. })));
    assert_eq!(d.status().failures, 1);
}

#[test]
fn a_reload_whose_child_exits_before_ready_fails_and_the_old_child_never_noticed() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let client = d.reload("/bin/next");
    d.prepared(true, 1);
    let new = d.incoming();
    d.exit(new, WaitStatus::Code(3));
    let Some(Response::Failed { reason }) = d.answer(client) else {
        panic!()
    };
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert_eq!(d.current(), first);
    assert!(!d.procs[&first].killed);
    assert_eq!(d.status().failures, 1);
}

/// The bug that made this machine: a stop during a reload whose serving child died was
/// lost; the supervisor fell back to the first binary and kept running.
#[test]
fn a_stop_during_a_reload_whose_serving_child_died_stops() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let second = d.reloaded();
    d.exit(first, WaitStatus::Code(0));
    let reload = d.reload("/bin/gate");
    d.prepared(true, 2);
    let gate = d.incoming();
    d.msg(gate, hello(true, 2_000));
    d.exit(second, WaitStatus::Signal(9));
    let spawns = d.spawns;
    let stop = d.request(Request::Stop);
    let Some(Response::Failed { reason }) = d.answer(reload) else {
        panic!()
    };
    assert_eq!(reason, "cancelled: svc is stopping");
    assert!(d.procs[&gate].killed);
    d.exit(gate, WaitStatus::Signal(9));
    assert_eq!(d.spawns, spawns, "nothing started after the stop");
    assert_eq!(d.m.done(), Some(1));
    assert_eq!(d.answer(stop), Some(&Response::Stopped { code: 1 }));
}

// The journal.

/// An event of the journal as `(kind, outcome, old pid, new pid)`.
type Told = (Kind, Option<Outcome>, Option<u32>, Option<u32>);

/// The journal's events, told.
fn journal(d: &Driver) -> Vec<Told> {
    (d.m.state().journal.events.iter())
        .map(|e| (e.kind, e.outcome, e.old_pid, e.new_pid))
        .collect()
}

#[test]
fn the_journal_tells_reloads_probations_and_rollbacks_as_they_went() {
    use Kind::{Promote, Reload, Rollback};
    use Outcome::{Failed, RolledBack, Succeeded};
    let (mut d, first) = serving_standing_by(settings(false, true));
    let pid = |d: &Driver, c: ChildId| Some(d.procs[&c].pid);
    // A reload that succeeds: its steps, and the connections its old child handed over.
    d.advance(5);
    let client = d.reload("/bin/next");
    d.prepared(true, 1);
    let second = d.incoming();
    d.msg(second, hello(true, 2_000));
    d.adopts(second);
    d.msg(second, ChildMsg::Ready);
    assert!(matches!(d.answer(client), Some(Response::Reloaded { .. })));
    d.hand(first, 3);
    for _ in 0..3 {
        assert!(d.answer_first(second, true));
    }
    d.advance(40);
    d.exit(first, WaitStatus::Code(0));
    let event = d.m.state().journal.events[0].clone();
    let steps = event.steps.unwrap_or_default();
    assert_eq!(steps.opened_ms, Some(0));
    assert_eq!(
        (steps.hello_ms, steps.ready_ms, steps.old_gone_ms),
        (Some(0), Some(0), Some(40))
    );
    assert_eq!(event.connections.map(|c| c.moved), Some(3));
    assert_eq!(event.path.as_deref(), Some("/bin/next"));
    // A reload that fails, with the words its client got.
    let client = d.reload("/bin/next");
    d.prepared(true, 1);
    let broken = d.incoming();
    d.exit(broken, WaitStatus::Code(3));
    let reason = d.failed(client);
    assert_eq!(
        d.m.state().journal.events[1].reason.as_deref(),
        Some(reason.as_str())
    );
    // A probation passed by the operator, then one rolled back warm.
    d.msg(second, ChildMsg::CanStandBy);
    let (_, third) = d.on_probation(30_000, true);
    assert_eq!(d.m.state().journal.events[2].outcome, None, "under way");
    d.request(Request::Promote);
    d.exit(second, WaitStatus::Code(0));
    d.msg(third, ChildMsg::CanStandBy);
    let (_, fourth) = d.on_probation(30_000, true);
    d.msg(
        fourth,
        ChildMsg::Unhealthy {
            reason: "db".into(),
        },
    );
    assert_eq!(
        journal(&d),
        vec![
            (Reload, Some(Succeeded), pid(&d, first), pid(&d, second)),
            (Reload, Some(Failed), pid(&d, second), pid(&d, broken)),
            (Reload, Some(Succeeded), pid(&d, second), pid(&d, third)),
            (Promote, Some(Succeeded), pid(&d, second), pid(&d, third)),
            (Reload, Some(RolledBack), pid(&d, third), pid(&d, fourth)),
            (Rollback, Some(Succeeded), pid(&d, fourth), pid(&d, third)),
        ]
    );
    assert_eq!(
        d.m.state().journal.events[5].reason.as_deref(),
        Some("unhealthy: db")
    );
    let seqs: Vec<u64> = d.m.state().journal.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
    d.finish();
}

#[test]
fn a_crash_loop_is_one_restart_event_whose_count_grows() {
    let (mut d, _) = Driver::serving(settings(true, false));
    d.reloaded();
    let mut child = d.current();
    for _ in 0..5 {
        d.exit(child, WaitStatus::Code(1));
        d.advance(30_000);
        child = d.current();
    }
    let events = &d.m.state().journal.events;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].kind, Kind::Reload);
    assert_eq!(events[1].kind, Kind::Restart);
    assert_eq!(events[1].count, Some(5));
    assert_eq!(events[1].new_pid, Some(d.procs[&child].pid));
    assert!(
        (events[1].reason.as_deref()).is_some_and(|r| r.starts_with("exited with code 1")),
        "{:?}",
        events[1].reason
    );
    // Something else between two crashes makes the next crash a new event.
    d.reloaded();
    let child = d.current();
    d.exit(child, WaitStatus::Code(1));
    let kinds: Vec<Kind> = d.m.state().journal.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![Kind::Reload, Kind::Restart, Kind::Reload, Kind::Restart]
    );
    assert_eq!(d.m.state().tally.exits, [6, 0, 0]);
}

#[test]
fn a_stop_during_a_persist_backoff_starts_nothing() {
    let (mut d, first) = Driver::serving(settings(true, true));
    d.exit(first, WaitStatus::Signal(9));
    assert!(
        d.logs
            .iter()
            .any(|l| l.starts_with("starting it again in 100 ms"))
    );
    let spawns = d.spawns;
    let stop = d.request(Request::Stop);
    assert_eq!(d.m.done(), Some(0));
    assert_eq!(d.answer(stop), Some(&Response::Stopped { code: 0 }));
    d.advance(1_000);
    assert_eq!(d.spawns, spawns);
}

#[test]
fn a_stop_during_a_reload_on_the_persist_path_stops() {
    let (mut d, first) = Driver::serving(settings(true, true));
    let reload = d.reload("/bin/gate");
    d.prepared(true, 2);
    let gate = d.incoming();
    d.msg(gate, hello(true, 2_000));
    d.exit(first, WaitStatus::Signal(9));
    let spawns = d.spawns;
    d.request(Request::Stop);
    assert!(matches!(d.answer(reload), Some(Response::Failed { .. })));
    d.exit(gate, WaitStatus::Signal(9));
    d.advance(60_000);
    assert_eq!(d.spawns, spawns);
    assert_eq!(d.m.done(), Some(1));
}

/// A `Ready` queued before a stop's kill must not promote the killed child, nor make
/// its death look like a ready child failing (which would fall back).
#[test]
fn a_ready_that_arrives_after_the_stop_changes_nothing() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let second = d.reloaded();
    d.exit(first, WaitStatus::Code(0));
    let reload = d.reload("/bin/third");
    d.prepared(true, 2);
    let third = d.incoming();
    d.msg(third, hello(true, 2_000));
    let spawns = d.spawns;
    d.request(Request::Stop);
    d.msg(third, ChildMsg::Ready);
    assert!(matches!(d.answer(reload), Some(Response::Failed { .. })));
    d.exit(third, WaitStatus::Signal(9));
    d.exit(second, WaitStatus::Code(0));
    assert_eq!(d.spawns, spawns);
    assert_eq!(d.m.done(), Some(0));
}

#[test]
fn a_ready_reloaded_child_that_fails_falls_back_to_the_previous_binary() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let second = d.reloaded();
    d.exit(first, WaitStatus::Code(0));
    d.exit(second, WaitStatus::Code(1));
    assert!(d.logs.iter().any(|l| l == "falling back to /bin/v1"));
    let status = d.status();
    assert_eq!((status.state.as_str(), status.restarts), ("starting", 1));
    d.finish();
}

#[test]
fn a_ready_child_killed_for_breaking_the_protocol_falls_back_as_a_crash_would() {
    // Its channel failed (a malformed message), or it sent what it must not.
    for broke in [
        Input::ChannelFailed {
            child: ChildId(0),
            reason: "it sent a malformed message: bad".to_string(),
        },
        Input::Message {
            child: ChildId(0),
            msg: ChildMsg::Hello(ChildHello {
                name: NAME.to_string(),
                pid: 1,
                calls_ready: true,
                settle_ms: 0,
                ready_timeout_ms: 0,
                lameduck_ms: 0,
            }),
        },
    ] {
        let (mut d, first) = Driver::serving(settings(false, true));
        let second = d.reloaded();
        d.exit(first, WaitStatus::Code(0));
        d.input(match broke {
            Input::ChannelFailed { reason, .. } => Input::ChannelFailed {
                child: second,
                reason,
            },
            Input::Message { msg, .. } => Input::Message { child: second, msg },
            other => other,
        });
        assert!(d.procs[&second].killed, "{:?}", d.logs);
        d.exit(second, WaitStatus::Signal(9));
        assert!(
            d.logs.iter().any(|l| l.contains("was killed")
                && (l.contains("malformed message") || l.contains("unexpected message"))),
            "the log says what it sent: {:?}",
            d.logs
        );
        assert!(
            d.logs.iter().any(|l| l == "falling back to /bin/v1"),
            "{:?}",
            d.logs
        );
        assert_eq!(d.m.done(), None, "the service goes on");
        let status = d.status();
        assert_eq!((status.state.as_str(), status.restarts), ("starting", 1));
        d.finish();
    }
}

#[test]
fn a_child_that_exits_on_its_own_stops_the_supervisor_with_its_code() {
    let (mut d, first) = Driver::serving(settings(false, true));
    d.exit(first, WaitStatus::Code(7));
    assert_eq!(d.m.done(), Some(7));
}

#[test]
fn the_first_child_that_cannot_start_stops_the_supervisor() {
    let mut m = Machine::new(
        settings(true, true),
        1,
        SystemTime::UNIX_EPOCH,
        Vec::new(),
        program("/bin/v1", 1),
        0,
    );
    let Some(Effect::Spawn { child, .. }) = m.poll_effect() else {
        panic!()
    };
    m.handle(
        Input::SpawnFailed {
            child,
            reason: "cannot start /bin/v1: permission denied".into(),
            busy: false,
        },
        0,
    );
    assert_eq!(m.done(), None, "what the service left is ended first");
    assert!(std::iter::from_fn(|| m.poll_effect()).any(|e| matches!(e, Effect::EndDescendants)));
    m.handle(Input::DescendantsEnded { ended: true }, 0);
    assert_eq!(m.done(), Some(1));
}

#[test]
fn a_second_stop_signal_kills_every_child_at_once() {
    let (mut d, first) = Driver::serving(settings(false, true));
    d.input(Input::Signal(Signal::Term));
    assert!(!d.procs[&first].killed);
    d.input(Input::Signal(Signal::Int));
    assert!(d.procs[&first].killed);
    d.exit(first, WaitStatus::Signal(9));
    assert_eq!(d.m.done(), Some(1));
}

#[test]
fn sighup_reloads_the_serving_binary_and_is_refused_while_stopping() {
    let (mut d, first) = Driver::serving(settings(false, true));
    d.input(Input::Signal(Signal::Hup));
    assert_eq!(d.status().state, "reloading");
    d.input(Input::Signal(Signal::Term));
    d.input(Input::Signal(Signal::Hup));
    assert!(
        d.logs
            .iter()
            .any(|l| l == "reload refused: svc is stopping")
    );
    d.prepared(true, 1);
    d.exit(first, WaitStatus::Code(0));
    assert_eq!(d.m.done(), Some(0));
}

#[test]
fn a_child_that_never_says_hello_or_ready_is_killed_in_time() {
    let mut d = Driver::new(settings(false, true));
    let first = d.current();
    d.advance(30_000);
    assert!(d.procs[&first].killed);
    d.exit(first, WaitStatus::Signal(9));
    assert_eq!(d.m.done(), Some(1));
    assert!(
        d.logs
            .iter()
            .any(|l| l.contains("was killed: it did not say hello within 30.0 s"))
    );
}

#[test]
fn another_service_is_refused_and_unexpected_messages_kill() {
    let (mut d, _) = Driver::serving(settings(false, true));
    let client = d.reload("/bin/other");
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(
        new,
        ChildMsg::Hello(ChildHello {
            name: "other".into(),
            pid: 0,
            calls_ready: true,
            settle_ms: 0,
            ready_timeout_ms: 0,
            lameduck_ms: 0,
        }),
    );
    assert!(d.procs[&new].killed);
    d.exit(new, WaitStatus::Signal(9));
    let Some(Response::Failed { reason }) = d.answer(client) else {
        panic!()
    };
    assert!(
        reason.contains("it is service \"other\", not \"svc\""),
        "{reason}"
    );
    let current = d.current();
    d.msg(current, hello(true, 0));
    assert!(d.procs[&current].killed);
}

#[test]
fn absurd_times_saturate_instead_of_overflowing() {
    let mut s = settings(false, true);
    s.lameduck_ms = u64::MAX;
    s.hello_timeout_ms = u64::MAX;
    let mut d = Driver::new(s);
    d.now = u64::MAX - 5;
    let first = d.current();
    d.msg(
        first,
        ChildMsg::Hello(ChildHello {
            name: NAME.into(),
            pid: 0,
            calls_ready: true,
            settle_ms: u64::MAX,
            ready_timeout_ms: u64::MAX,
            lameduck_ms: u64::MAX,
        }),
    );
    d.advance(u64::MAX);
    assert!(d.procs[&first].killed);
    d.exit(first, WaitStatus::Signal(9));
    assert_eq!(d.m.done(), Some(1));
}

#[test]
fn a_client_that_went_away_is_not_answered() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let client = d.reload("/bin/next");
    d.gone.insert(client);
    d.input(Input::ClientGone { client });
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello(false, 0));
    d.advance(250);
    assert_eq!(d.current(), new);
    assert_eq!(d.answer(client), None);
    d.exit(first, WaitStatus::Code(0));
    d.finish();
}

// --- dev mode -------------------------------------------------------------------------

impl Driver {
    /// A build lands; in dev mode with nothing under way, its reload is prepared.
    fn build(&mut self) {
        self.input(Input::BuildLanded);
    }

    /// The lines that start with `dev:`.
    fn dev_lines(&self) -> Vec<&str> {
        self.logs
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("dev:"))
            .collect()
    }
}

#[test]
fn a_build_reloads_the_serving_path_with_its_arguments_and_says_one_line() {
    let (mut d, first) = Driver::serving(dev());
    let logs = d.logs.len();
    d.build();
    assert_eq!(
        d.prepare,
        Some((PathBuf::from("/bin/v1"), vec![OsString::from("/bin/v1")]))
    );
    assert_eq!(d.status().state, "reloading");
    d.prepared(true, 2);
    let new = d.incoming();
    d.msg(new, hello(true, 2_000));
    d.advance(35);
    d.msg(new, ChildMsg::Ready);
    assert_eq!(d.current(), new);
    let (old_pid, new_pid) = (d.procs[&first].pid, d.procs[&new].pid);
    assert_eq!(
        d.logs[logs..],
        [format!(
            "dev: new build ready, pid {old_pid} -> {new_pid} in 35 ms"
        )]
    );
    d.exit(first, WaitStatus::Code(0));
    assert_eq!(d.status().reloads, 1);
    d.finish();
}

#[test]
fn builds_during_a_reload_make_one_more_reload_when_it_ends() {
    let (mut d, _) = Driver::serving(dev());
    d.build();
    d.prepared(true, 2);
    d.build();
    d.build();
    let second = d.incoming();
    d.msg(second, hello(true, 0));
    d.build();
    assert!(!d.preparing, "kept while the reload is under way");
    d.msg(second, ChildMsg::Ready);
    assert_eq!(d.current(), second);
    assert!(d.preparing, "the kept build reloads at once");
    d.prepared(true, 3);
    let third = d.incoming();
    d.msg(third, hello(true, 0));
    d.msg(third, ChildMsg::Ready);
    assert_eq!(d.current(), third);
    assert!(!d.preparing, "one kept build, one more reload");
    assert_eq!(d.status().reloads, 2);
    d.finish();
}

#[test]
fn a_build_that_exits_before_it_is_ready_leaves_the_old_one_serving() {
    let (mut d, first) = Driver::serving(dev());
    d.build();
    d.prepared(true, 2);
    let new = d.incoming();
    let (old_pid, new_pid) = (d.procs[&first].pid, d.procs[&new].pid);
    d.exit(new, WaitStatus::Code(101));
    assert_eq!(
        d.dev_lines(),
        [format!(
            "dev: new build pid {new_pid} exited with code 101 before it was ready; still serving pid {old_pid}"
        )]
    );
    assert!(
        !d.logs.iter().any(|l| l.starts_with("reload")),
        "{:?}",
        d.logs
    );
    assert_eq!(d.current(), first);
    assert!(!d.procs[&first].killed);
    assert_eq!(d.status().failures, 1);
    // A build kept behind the failed one reloads when it fails.
    d.build();
    d.prepared(true, 3);
    d.build();
    let next = d.incoming();
    d.exit(next, WaitStatus::Code(101));
    assert!(d.preparing, "the kept build reloads after the failure");
    d.finish();
}

#[test]
fn a_build_of_another_service_is_refused() {
    let (mut d, first) = Driver::serving(dev());
    d.build();
    d.prepared(true, 2);
    let new = d.incoming();
    let mut other = hello(true, 0);
    if let ChildMsg::Hello(h) = &mut other {
        h.name = "other".into();
    }
    d.msg(new, other);
    assert!(d.procs[&new].killed);
    d.exit(new, WaitStatus::Code(1));
    let line = d.dev_lines().join("\n");
    assert!(
        line.contains("was killed before it was ready: it is service \"other\", not \"svc\"; still serving pid"),
        "{line}"
    );
    assert_eq!(d.current(), first);
    d.finish();
}

#[test]
fn in_dev_mode_a_child_that_crashes_waits_for_the_next_build() {
    let (mut d, first) = Driver::serving(dev());
    let spawns = d.spawns;
    let pid = d.procs[&first].pid;
    d.advance(1_500);
    d.exit(first, WaitStatus::Code(101));
    assert_eq!(d.m.done(), None, "the session goes on");
    assert_eq!(
        d.dev_lines(),
        [format!(
            "dev: child pid {pid} exited with code 101 after 1.5 s; the listeners stay open, waiting for the next build"
        )]
    );
    let status = d.status();
    assert_eq!((status.state.as_str(), status.child_pid), ("idle", None));
    d.advance(120_000);
    assert_eq!(d.spawns, spawns, "no restart of the same binary");
    d.build();
    d.prepared(true, 2);
    let new = d.incoming();
    d.msg(new, hello(true, 0));
    d.msg(new, ChildMsg::Ready);
    assert_eq!(d.current(), new);
    let new_pid = d.procs[&new].pid;
    assert!(
        d.logs
            .iter()
            .any(|l| *l == format!("dev: new build ready, pid {new_pid} in 0 ms")),
        "{:?}",
        d.logs
    );
    assert_eq!(d.status().state, "running");
    d.finish();
}

#[test]
fn in_dev_mode_a_build_still_being_written_is_not_a_failure() {
    let (mut d, first) = Driver::serving(dev());
    let old_pid = d.procs[&first].pid;
    d.fail_spawns = true;
    d.busy_spawns = true;
    d.build();
    d.prepared(true, 2);
    assert_eq!(
        d.dev_lines(),
        [format!(
            "dev: new build is still being written (executable file busy); it starts once it is complete; still serving pid {old_pid}"
        )]
    );
    assert_eq!(d.watched_again, 1, "the watch looks at it again");
    assert_eq!(d.status().failures, 0);
    assert_eq!(d.current(), first);
    // Reported again once complete, it reloads.
    d.fail_spawns = false;
    d.build();
    d.prepared(true, 3);
    let new = d.incoming();
    d.msg(new, hello(false, 0));
    d.advance(250);
    assert_eq!(d.current(), new);
    assert_eq!(d.status().failures, 0);
    d.finish();
}

#[test]
fn in_dev_mode_a_first_child_that_cannot_start_waits_for_a_build() {
    let mut d = Driver::new(dev());
    let first = d.current();
    d.exit(first, WaitStatus::Code(101));
    assert_eq!(d.status().state, "idle");
    d.fail_spawns = true;
    d.build();
    d.prepared(true, 2);
    assert!(
        d.dev_lines()
            .iter()
            .any(|l| l.starts_with("dev: new build could not be started: cannot start")),
        "{:?}",
        d.logs
    );
    assert_eq!(d.status().state, "idle");
    // A SIGHUP starts the same binary again, as a reload.
    d.fail_spawns = false;
    d.input(Input::Signal(Signal::Hup));
    d.prepared(true, 3);
    let new = d.incoming();
    d.msg(new, hello(false, 0));
    d.advance(250);
    assert_eq!(d.current(), new);
    d.finish();
}

#[test]
fn builds_are_ignored_outside_dev_mode_and_while_stopping() {
    let (mut d, first) = Driver::serving(settings(false, true));
    d.build();
    assert!(!d.preparing);
    assert_eq!(d.status().state, "running");
    let (mut d2, first2) = Driver::serving(dev());
    d2.input(Input::Signal(Signal::Int));
    d2.build();
    assert!(!d2.preparing);
    d2.exit(first2, WaitStatus::Code(0));
    assert_eq!(d2.m.done(), Some(0));
    d.exit(first, WaitStatus::Code(0));
    assert_eq!(d.m.done(), Some(0));
}

#[test]
fn a_stop_drops_a_kept_build() {
    let (mut d, first) = Driver::serving(dev());
    d.build();
    d.build();
    assert!(matches!(
        d.m.state().lifecycle,
        Lifecycle::Reloading(Reload {
            build_pending: true,
            ..
        })
    ));
    d.input(Input::Signal(Signal::Term));
    assert!(matches!(d.m.state().lifecycle, Lifecycle::Stopping(_)));
    d.prepared(true, 2);
    d.exit(first, WaitStatus::Code(0));
    assert_eq!(d.m.done(), Some(0));
}

// --- random sequences ---------------------------------------------------------------

#[derive(Clone, Debug)]
enum Action {
    Hello {
        child: usize,
        ok: bool,
        calls_ready: bool,
        lameduck_ms: u64,
    },
    Ready(usize),
    Finished(usize),
    Garbage(usize),
    /// The shell measured a child's room: this many more fds.
    Room(usize, u64),
    Exit {
        child: usize,
        code: i32,
    },
    Status,
    Stop,
    Reload,
    Prepared(bool),
    Gone(usize),
    Signal(Signal),
    Advance(u64),
    FailSpawns(bool),
    BuildLanded,
    Upgrade,
    Probed(bool),
    Exec(bool),
    Adopts(usize),
    Hand(usize, usize),
    Answer(usize, bool),
    /// The reload's new child says hello (declaring a probation of this long, if
    /// any), adopts (or not), and is ready.
    Promote(bool, Option<u64>),
    /// A child says it can stand by.
    CanStandBy(usize),
    /// A child says it is unhealthy.
    Unhealthy(usize),
    /// `--littleboss=promote`.
    PromoteCmd,
    /// `--littleboss=rollback`.
    RollbackCmd,
    /// `--littleboss=history`, then `metrics`.
    HistoryCmd,
    /// A child reports what its HTTP helpers counted: this many responses so far.
    Counts(usize, u64),
    /// A child offers its state.
    OffersState(usize),
    /// A child asks for the state, waiting up to this long.
    StateAsk(usize, u64),
    /// A child gives the head of a state: this many bytes and named fds.
    StateGive {
        child: usize,
        size: u64,
        fds: u32,
        update: bool,
    },
    /// A child gives this many named fds of its state.
    StateFds(usize, usize),
    /// A child answers that it has no state.
    StateNone(usize),
    /// A state message of a child comes with its fds cut short (this many names).
    StateCut(usize, usize),
    /// The reload's old child offers, its new one asks, and the old one gives a whole
    /// state of this many fds (or, `update`, some child not serving gives a later
    /// snapshot).
    Transfer {
        fds: u32,
        update: bool,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let child = 0usize..4;
    prop_oneof![
        3 => (child.clone(), prop::bool::weighted(0.9), any::<bool>(), prop_oneof![Just(0u64), 0..3_000u64, Just(u64::MAX)])
            .prop_map(|(child, ok, calls_ready, lameduck_ms)| Action::Hello { child, ok, calls_ready, lameduck_ms }),
        3 => child.clone().prop_map(Action::Ready),
        1 => child.clone().prop_map(Action::Finished),
        1 => child.clone().prop_map(Action::Garbage),
        3 => (child.clone(), prop_oneof![Just(0), Just(1), Just(-9)]).prop_map(|(child, code)| Action::Exit { child, code }),
        1 => Just(Action::Status),
        1 => Just(Action::Stop),
        3 => Just(Action::Reload),
        3 => any::<bool>().prop_map(Action::Prepared),
        1 => (0usize..8).prop_map(Action::Gone),
        1 => prop_oneof![Just(Signal::Term), Just(Signal::Int), Just(Signal::Hup)].prop_map(Action::Signal),
        3 => prop_oneof![0..300u64, 0..40_000u64].prop_map(Action::Advance),
        1 => prop::bool::weighted(0.2).prop_map(Action::FailSpawns),
        3 => Just(Action::BuildLanded),
        2 => Just(Action::Upgrade),
        3 => prop::bool::weighted(0.8).prop_map(Action::Probed),
        3 => prop::bool::weighted(0.8).prop_map(Action::Exec),
        3 => child.clone().prop_map(Action::Adopts),
        4 => (child.clone(), 1usize..4).prop_map(|(child, n)| Action::Hand(child, n)),
        4 => (child.clone(), prop::bool::weighted(0.8)).prop_map(|(child, take)| Action::Answer(child, take)),
        3 => (prop::bool::weighted(0.8), prop_oneof![Just(None), Just(Some(0)), (1..40_000u64).prop_map(Some)])
            .prop_map(|(adopts, probation)| Action::Promote(adopts, probation)),
        2 => child.clone().prop_map(Action::CanStandBy),
        1 => child.clone().prop_map(Action::Unhealthy),
        1 => Just(Action::PromoteCmd),
        1 => Just(Action::RollbackCmd),
        1 => Just(Action::HistoryCmd),
        2 => (child.clone(), 0..1_000u64).prop_map(|(child, n)| Action::Counts(child, n)),
    ]
}

fn play(d: &mut Driver, action: Action) {
    let pick = |d: &Driver, i: usize| {
        let running = d.running();
        (!running.is_empty()).then(|| running[i % running.len()])
    };
    let fd_names = |n: usize| (0..n).map(|i| format!("fd{i}")).collect::<Vec<String>>();
    match action {
        Action::OffersState(i) => {
            if let Some(c) = pick(d, i) {
                d.msg(c, ChildMsg::OffersState);
            }
        }
        Action::StateAsk(i, timeout_ms) => {
            if let Some(c) = pick(d, i) {
                d.msg(c, ChildMsg::StateAsk { timeout_ms });
            }
        }
        Action::StateGive {
            child,
            size,
            fds,
            update,
        } => {
            if let Some(c) = pick(d, child) {
                let head = StateHeader {
                    size,
                    fds,
                    from: 0,
                    update,
                };
                d.msg(c, ChildMsg::StateGive(head));
            }
        }
        Action::StateFds(i, n) => {
            if let Some(c) = pick(d, i) {
                d.msg(c, ChildMsg::StateFds(fd_names(n)));
            }
        }
        Action::StateNone(i) => {
            if let Some(c) = pick(d, i) {
                d.msg(c, ChildMsg::StateNone { reason: None });
            }
        }
        Action::StateCut(i, n) => {
            if let Some(c) = pick(d, i) {
                let msg = ChildMsg::StateFds(fd_names(n));
                d.input(Input::StateCut { child: c, msg });
            }
        }
        Action::Transfer { fds, update } => {
            // Begins a reload if none is under way, to a child that calls ready().
            if !update && matches!(d.m.state().lifecycle, Lifecycle::Serving { .. }) {
                d.reload("/bin/next");
                d.prepared(true, 1);
                if let Some(new) = d.m.state().incoming_id() {
                    d.msg(new, hello(true, 2_000));
                }
            }
            let state = d.m.state();
            let giver = match (update, &state.lifecycle) {
                (false, Lifecycle::Reloading(reload)) => {
                    match (reload.old.clone(), state.incoming_id()) {
                        (Slot::Child(old), Some(new)) => Some((old, Some(new))),
                        _ => None,
                    }
                }
                (true, _) => {
                    let serving = state.serving_id();
                    (d.running().into_iter())
                        .find(|c| Some(*c) != serving)
                        .map(|c| (c, None))
                }
                _ => None,
            };
            if let Some((old, new)) = giver {
                if let Some(new) = new {
                    d.msg(old, ChildMsg::OffersState);
                    d.msg(new, ChildMsg::StateAsk { timeout_ms: 5_000 });
                }
                if d.running().contains(&old) {
                    d.give(old, 10, fds, update);
                }
            }
        }
        Action::Hello {
            child,
            ok,
            calls_ready,
            lameduck_ms,
        } => {
            if let Some(c) = pick(d, child) {
                let msg = ChildMsg::Hello(ChildHello {
                    name: if ok { NAME.into() } else { "other".into() },
                    pid: 0,
                    calls_ready,
                    settle_ms: 250,
                    ready_timeout_ms: 5_000,
                    lameduck_ms,
                });
                d.msg(c, msg);
            }
        }
        Action::Ready(i) => {
            if let Some(c) = pick(d, i) {
                d.msg(c, ChildMsg::Ready);
            }
        }
        Action::Finished(i) => {
            if let Some(c) = pick(d, i) {
                d.msg(c, ChildMsg::Finished(Ok(())));
            }
        }
        Action::Room(i, free) => {
            if let Some(c) = pick(d, i) {
                d.input(Input::Room { child: c, free });
            }
        }
        Action::Garbage(i) => {
            if let Some(c) = pick(d, i) {
                d.input(Input::ChannelFailed {
                    child: c,
                    reason: "it sent fds".into(),
                });
            }
        }
        Action::Exit { child, code } => {
            if let Some(c) = pick(d, child) {
                let status = if code < 0 {
                    WaitStatus::Signal(-code)
                } else {
                    WaitStatus::Code(code)
                };
                d.exit(c, status);
            }
        }
        Action::Status => {
            let client = d.request(Request::Status);
            assert!(matches!(d.answer(client), Some(Response::Status(_))));
        }
        Action::Stop => {
            d.request(Request::Stop);
            assert!(d.stopping());
        }
        Action::Reload => {
            d.reload("/bin/next");
        }
        Action::Prepared(ok) => d.prepared(ok, 1),
        Action::Gone(i) => {
            let waiting: Vec<ClientId> = d
                .asked
                .iter()
                .filter(|c| !d.answers.contains_key(c) && !d.gone.contains(c))
                .copied()
                .collect();
            if !waiting.is_empty() {
                let client = waiting[i % waiting.len()];
                d.gone.insert(client);
                d.input(Input::ClientGone { client });
            }
        }
        Action::Signal(signal) => {
            d.input(Input::Signal(signal));
            if signal != Signal::Hup {
                assert!(d.stopping());
            }
        }
        Action::Advance(ms) => d.advance(ms),
        Action::FailSpawns(fail) => {
            d.fail_spawns = fail;
            // Every other failing spawn is a build still being written.
            d.busy_spawns = fail && d.spawns % 2 == 0;
        }
        Action::BuildLanded => d.build(),
        Action::Upgrade => {
            d.upgrade("/bin/next");
        }
        Action::Probed(ok) => d.probed(ok),
        Action::Exec(ok) => d.exec(ok),
        Action::Adopts(i) => {
            if let Some(c) = pick(d, i) {
                d.adopts(c);
            }
        }
        Action::Hand(i, n) => {
            // Mostly a child winding down, which is who hands connections over.
            let state = d.m.state();
            let named = [state.serving_id(), state.incoming_id()];
            let winding: Vec<ChildId> = state
                .children
                .keys()
                .copied()
                .filter(|id| !named.contains(&Some(*id)) && !d.procs[id].exited)
                .collect();
            let child = if winding.is_empty() || i == 3 {
                pick(d, i)
            } else {
                Some(winding[i % winding.len()])
            };
            if let Some(c) = child {
                d.hand(c, n);
            }
        }
        Action::Promote(adopts, probation) => {
            let state = d.m.state();
            if let Some(c) = state.incoming_id().and_then(|id| state.children.get(&id)) {
                let new = c.id;
                if !c.welcomed() && c.life == Life::Started {
                    let hello = match probation {
                        Some(ms) => hello_probation(ms, ms % 3 != 0),
                        None => hello(true, 2_000),
                    };
                    d.msg(new, hello);
                }
                if adopts {
                    d.adopts(new);
                }
                d.msg(new, ChildMsg::Ready);
            }
        }
        Action::Answer(i, take) => {
            if let Some(c) = pick(d, i) {
                d.answer_first(c, take);
            }
        }
        Action::CanStandBy(i) => {
            if let Some(c) = pick(d, i) {
                d.msg(c, ChildMsg::CanStandBy);
            }
        }
        Action::Unhealthy(i) => {
            if let Some(c) = pick(d, i) {
                d.msg(
                    c,
                    ChildMsg::Unhealthy {
                        reason: "no".into(),
                    },
                );
            }
        }
        Action::PromoteCmd => {
            d.request(Request::Promote);
        }
        Action::RollbackCmd => {
            d.request(Request::Rollback);
        }
        Action::HistoryCmd => {
            let client = d.request(Request::History);
            let Some(Response::History(history)) = d.answer(client) else {
                panic!("history answered {:?}", d.answer(client));
            };
            assert_eq!(history.events.len(), d.m.state().journal.events.len());
            let client = d.request(Request::Metrics);
            assert!(matches!(d.answer(client), Some(Response::Metrics { .. })));
        }
        Action::Counts(i, n) => {
            if let Some(c) = pick(d, i) {
                let before: u64 = (d.m.state().tally.http.values())
                    .map(|t| t.codes.iter().sum::<u64>())
                    .sum();
                let mut buckets =
                    vec![0; crate::control::protocol::HTTP_DURATION_BOUNDS_US.len() + 1];
                buckets[0] = n;
                d.msg(
                    c,
                    ChildMsg::Counts(vec![crate::control::protocol::HttpCounts {
                        listener: "http".into(),
                        codes: [0, n, 0, 0, 0],
                        bounds_us: crate::control::protocol::HTTP_DURATION_BOUNDS_US.to_vec(),
                        buckets,
                        sum_us: n,
                        open: n % 7,
                    }]),
                );
                let after: u64 = (d.m.state().tally.http.values())
                    .map(|t| t.codes.iter().sum::<u64>())
                    .sum();
                assert!(after >= before, "a count went back: {before} -> {after}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    /// Any sequence of inputs, in any phase, keeps every promise at every step, and a
    /// stop at the end always ends the supervisor within the lameduck time; in dev mode
    /// nothing but a stop ends it.
    #[test]
    fn every_interleaving_keeps_the_promises(
        persist in any::<bool>(),
        fallback in any::<bool>(),
        dev in any::<bool>(),
        actions in prop::collection::vec(action(), 0..60),
    ) {
        let mut d = Driver::new(Settings { dev, ..settings(persist, fallback) });
        for action in actions {
            if d.m.done().is_some() {
                break;
            }
            play(&mut d, action);
        }
        if d.m.done().is_none() {
            d.fail_spawns = false;
            d.finish();
        }
    }
}

// --- upgrades -----------------------------------------------------------------------

impl Driver {
    /// An upgrade whose child is ready and whose second probe has been asked for.
    fn upgraded_child(&mut self) -> (ClientId, ChildId) {
        let client = self.upgrade("/bin/next");
        self.prepared(true, 5);
        assert_eq!(
            self.probing, 1,
            "the binary is probed before its child starts"
        );
        assert!(self.running().len() == 1, "no child yet");
        self.probed(true);
        let new = self.incoming();
        self.msg(new, hello(true, 2_000));
        self.msg(new, ChildMsg::Ready);
        assert_eq!(self.answer(client), None, "the supervisor is next");
        assert_eq!(self.probing, 1, "probed again, with the new child's state");
        assert_eq!(self.status().state, "upgrading");
        (client, new)
    }
}

#[test]
fn an_upgrade_reloads_the_child_then_re_executes_the_supervisor() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let (client, new) = d.upgraded_child();
    d.probe_answer(Ok(1));
    assert!(
        d.exec.is_none(),
        "the old child may still hand connections over"
    );
    d.exit(first, WaitStatus::Code(0));
    assert!(d.exec.is_some(), "nothing moves any more");
    d.exec(true);
    match d.answer(client) {
        Some(Response::Upgraded(up)) => {
            assert_eq!(up.new_pid, d.procs[&new].pid);
            assert_eq!(up.old_pid, Some(d.procs[&first].pid));
            assert_eq!((up.from, up.to), (3, 3));
            assert_eq!(up.path, "/bin/next");
        }
        other => panic!("{other:?}"),
    }
    let status = d.status();
    assert_eq!(status.upgrades, 1);
    assert_eq!(status.supervisor_path.as_deref(), Some("/bin/next"));
    assert_eq!(status.state, "running");
    d.finish();
}

#[test]
fn a_binary_that_refuses_the_state_changes_nothing() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let client = d.upgrade("/bin/next");
    d.prepared(true, 5);
    d.probed(false);
    assert!(
        matches!(d.answer(client), Some(Response::Failed { reason }) if reason.contains("nothing was changed"))
    );
    assert_eq!(d.running(), vec![first]);
    assert_eq!(d.spawns, 1);
    assert_eq!(d.status().state, "running");
}

#[test]
fn a_refused_probe_or_exec_after_the_reload_leaves_the_new_child_serving() {
    for exec_fails in [false, true] {
        let (mut d, first) = Driver::serving(settings(false, true));
        let (client, new) = d.upgraded_child();
        if exec_fails {
            d.probed(true);
            d.exit(first, WaitStatus::Code(0));
            d.exec(false);
        } else {
            d.probed(false);
        }
        match d.answer(client) {
            Some(Response::Failed { reason }) => {
                assert!(reason.contains("the supervisor was not"), "{reason}");
                assert!(reason.contains("it still runs /bin/v1"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.current(), new);
        let status = d.status();
        assert_eq!(status.upgrades, 0);
        assert_eq!(status.supervisor_path.as_deref(), Some("/bin/v1"));
    }
}

#[test]
fn an_upgrade_is_refused_during_a_reload_an_upgrade_or_a_stop() {
    let (mut d, first) = Driver::serving(settings(false, true));
    d.reload("/bin/next");
    let refused = d.upgrade("/bin/next");
    assert!(
        matches!(d.answer(refused), Some(Response::Failed { reason }) if reason.contains("a reload is under way"))
    );
    d.prepared(false, 2);
    let (_, _) = d.upgraded_child();
    let second = d.upgrade("/bin/next");
    assert!(
        matches!(d.answer(second), Some(Response::Failed { reason }) if reason.contains("another upgrade is under way"))
    );
    let reload = d.reload("/bin/other");
    assert!(
        matches!(d.answer(reload), Some(Response::Failed { reason }) if reason.contains("an upgrade is under way"))
    );
    d.input(Input::Signal(Signal::Hup));
    assert_eq!(d.spawns, 2, "SIGHUP starts nothing during an upgrade");
    let _ = first;
    d.request(Request::Stop);
    let late = d.upgrade("/bin/next");
    assert!(
        matches!(d.answer(late), Some(Response::Failed { reason }) if reason.contains("is stopping"))
    );
    d.finish();
}

#[test]
fn a_stop_cancels_an_upgrade_and_no_exec_follows() {
    let (mut d, _) = Driver::serving(settings(false, true));
    let (client, _) = d.upgraded_child();
    d.request(Request::Stop);
    assert!(
        matches!(d.answer(client), Some(Response::Failed { reason }) if reason.contains("stopping"))
    );
    d.probed(true);
    assert!(d.exec.is_none(), "no exec once stopping");
    d.finish();
}

// --- connections moving between children ---------------------------------------------

/// A serving child that adopts `http` connections, reloaded to another that does too.
fn moving() -> (Driver, ChildId, ChildId) {
    let (mut d, first) = Driver::serving(settings(false, true));
    d.adopts(first);
    let client = d.reload("/bin/next");
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello(true, 2_000));
    d.adopts(new);
    d.m.handle(
        Input::Message {
            child: new,
            msg: ChildMsg::Ready,
        },
        d.now,
    );
    let mut effects = Vec::new();
    while let Some(effect) = d.m.poll_effect() {
        effects.push(effect);
    }
    // The old child learns of its successor before its lameduck.
    let successor = effects.iter().position(|e| {
        matches!(e, Effect::Send { child, msg: SupervisorMsg::Successor { adopts } } if *child == first && adopts == &["http".to_string()])
    });
    let lameduck = effects.iter().position(
        |e| matches!(e, Effect::Send { child, msg: SupervisorMsg::Lameduck } if *child == first),
    );
    assert!(successor.is_some() && successor < lameduck, "{effects:?}");
    for effect in effects {
        d.m.effects.push_back(effect);
    }
    d.drain(false);
    d.check();
    assert!(matches!(d.answer(client), Some(Response::Reloaded { .. })));
    (d, first, new)
}

#[test]
fn idle_connections_move_to_the_successor_and_the_sender_closes_them_once_taken() {
    let (mut d, old, new) = moving();
    d.hand(old, 3);
    assert_eq!(d.conns.inbox[&new].len(), 3);
    assert!(d.answer_first(new, true));
    assert!(d.answer_first(new, true));
    assert_eq!(d.conns.waiting.len(), 1, "two taken, one still on its way");
    // Declined: back to the sender.
    assert!(d.answer_first(new, false));
    assert!(d.conns.waiting.is_empty());
    assert_eq!(d.conns.returned.len(), 1);
    d.exit(old, WaitStatus::Code(0));
    d.finish();
}

#[test]
fn without_a_successor_that_adopts_connections_go_back_at_once() {
    // The new child does not adopt: the old one is told nothing, and what it hands
    // over anyway goes back.
    let (mut d, old) = Driver::serving(settings(false, true));
    let new = d.reloaded();
    d.hand(old, 2);
    assert_eq!(d.conns.returned.len(), 2);
    assert!(!d.conns.inbox.contains_key(&new));
    // A stop: nobody serves, so nothing moves.
    let (mut d, old, _) = moving();
    d.request(Request::Stop);
    d.hand(old, 1);
    assert_eq!(d.conns.returned.len(), 1);
    d.finish();
}

#[test]
fn a_successor_that_adopts_late_is_announced_to_the_children_winding_down() {
    let (mut d, old) = Driver::serving(settings(false, true));
    let new = d.reloaded();
    d.adopts(new);
    d.hand(old, 1);
    assert_eq!(d.conns.inbox[&new].len(), 1);
    assert!(d.answer_first(new, true));
    assert!(d.conns.waiting.is_empty());
}

#[test]
fn a_reload_that_rolls_back_hands_nothing_over() {
    let (mut d, first) = Driver::serving(settings(false, true));
    d.adopts(first);
    d.reload("/bin/next");
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello(true, 2_000));
    d.adopts(new);
    // It fails before it is ready: the serving child is told of no successor, and what
    // is handed over anyway goes back.
    d.exit(new, WaitStatus::Code(1));
    assert_eq!(d.current(), first);
    assert!(
        d.conns.told.is_empty(),
        "told of a successor: {:?}",
        d.conns.told
    );
    d.hand(first, 1);
    assert_eq!(d.conns.returned.len(), 1);
    d.finish();
}

#[test]
fn connections_not_taken_in_time_are_recalled_once() {
    let (mut d, old, new) = moving();
    d.hand(old, 1);
    let before = d.m.next_deadline().expect("a deadline");
    assert!(before <= d.now + d.m.settings.take_ms);
    d.m.handle_timeout(d.now + d.m.settings.take_ms);
    let recalls: Vec<Effect> = std::iter::from_fn(|| d.m.poll_effect()).collect();
    assert!(
        recalls.iter().any(|e| matches!(e, Effect::Send { child, msg: SupervisorMsg::Recall(ids) } if *child == new && ids.len() == 1)),
        "{recalls:?}"
    );
    d.now += d.m.settings.take_ms;
    d.advance(d.m.settings.take_ms);
    assert!(
        !std::iter::from_fn(|| d.m.poll_effect()).any(|e| matches!(
            e,
            Effect::Send {
                msg: SupervisorMsg::Recall(_),
                ..
            }
        )),
        "recalled once"
    );
    // The receiver declines it (it had not taken it): back to the sender.
    assert!(d.answer_first(new, false));
    assert_eq!(d.conns.returned.len(), 1);
}

#[test]
fn a_receiver_that_answers_gets_its_full_time_again_for_the_rest() {
    let (mut d, old, new) = moving();
    let take = d.m.take_ms(old);
    d.hand(old, 2);
    // Just before the first deadline, it answers for one: the other's time starts again.
    d.advance(take - 10);
    assert!(d.answer_first(new, true));
    d.m.handle_timeout(d.now + 20);
    assert!(!d.recalled(), "a receiver that answers is not stuck");
    d.m.handle_timeout(d.now + take);
    assert!(d.recalled(), "recalled once it stopped answering");
}

#[test]
fn what_is_forwarded_stays_within_the_receivers_room() {
    let (mut d, old, new) = moving();
    // Room for 2 beyond the reserve (16).
    d.input(Input::Room {
        child: new,
        free: 18,
    });
    d.hand(old, 3);
    assert_eq!(d.conns.inbox[&new].len(), 2);
    assert_eq!(d.conns.held.len(), 1, "the third waits for room");
    // It adopted one, which keeps an fd open in it: still no room until it is measured
    // again.
    assert!(d.answer_first(new, true));
    assert_eq!(d.conns.inbox[&new].len(), 1);
    assert_eq!(d.conns.held.len(), 1);
    d.input(Input::Room {
        child: new,
        free: 18,
    });
    assert_eq!(
        d.conns.inbox[&new].len(),
        2,
        "measured again: room for one more"
    );
    assert!(d.conns.held.is_empty());
    // None at all, and nothing on its way: what comes goes back to be wound down.
    assert!(d.answer_first(new, true));
    assert!(d.answer_first(new, true));
    d.input(Input::Room {
        child: new,
        free: 3,
    });
    d.hand(old, 2);
    assert_eq!(d.conns.returned.len(), 2);
    assert!(d.conns.held.is_empty());
    d.finish();
}

#[test]
fn a_receiver_with_plenty_of_room_is_measured_again_only_once_the_measure_is_old() {
    let (mut d, old, new) = moving();
    d.input(Input::Room {
        child: new,
        free: 100_000,
    });
    d.conns.measured.clear();
    d.hand(old, 2);
    assert_eq!(d.conns.inbox[&new].len(), 2);
    assert!(
        d.conns.measured.is_empty(),
        "plenty of room, measured just now"
    );
    d.advance(ROOM_TRUSTED_MS);
    d.hand(old, 1);
    assert_eq!(
        d.conns.measured,
        [new],
        "the measure is {ROOM_TRUSTED_MS} ms old"
    );
    // Little room: measured after every forward.
    d.input(Input::Room {
        child: new,
        free: 16 + ROOM_PLENTY as u64 + 3,
    });
    d.conns.measured.clear();
    d.hand(old, 1);
    assert_eq!(d.conns.measured, [new], "fewer than {ROOM_PLENTY} fds left");
    d.finish();
}

#[test]
fn past_the_cap_connections_wait_and_a_receiver_that_exits_gives_back_the_rest() {
    let (mut d, old, new) = moving();
    // The cap (4 here): the fifth and sixth wait, held, for room on the way.
    d.hand(old, 6);
    assert_eq!(d.conns.inbox[&new].len(), 4);
    assert_eq!(d.conns.held.len(), 2);
    assert!(d.conns.returned.is_empty());
    // One taken makes room for the next.
    assert!(d.answer_first(new, true));
    assert_eq!(d.conns.inbox[&new].len(), 4);
    assert_eq!(d.conns.held.len(), 1);
    d.exit(new, WaitStatus::Signal(9));
    assert_eq!(
        d.conns.returned.len(),
        5,
        "the four it had not taken, and the one still held, went back"
    );
    assert!(d.conns.waiting.is_empty());
    // What the sender handed over to a receiver that went away, it serves itself.
    d.finish();
}

#[test]
fn a_sender_that_exits_is_forgotten_and_its_receiver_keeps_what_it_took() {
    let (mut d, old, new) = moving();
    d.hand(old, 2);
    d.exit(old, WaitStatus::Code(0));
    assert!(d.answer_first(new, true));
    assert!(d.answer_first(new, false));
    assert_eq!(d.m.moves.in_transit(), 0);
    d.finish();
}

/// Mostly what moves connections, among what disturbs them: children exiting, time
/// passing (recalls, kills), more reloads, stops, upgrades.
fn moving_action() -> impl Strategy<Value = Action> {
    let child = 0usize..4;
    prop_oneof![
        6 => (child.clone(), 1usize..4).prop_map(|(child, n)| Action::Hand(child, n)),
        6 => (child.clone(), prop::bool::weighted(0.8)).prop_map(|(child, take)| Action::Answer(child, take)),
        2 => child.clone().prop_map(Action::Adopts),
        2 => Just(Action::Reload),
        2 => prop::bool::weighted(0.9).prop_map(Action::Prepared),
        3 => (prop::bool::weighted(0.8), prop_oneof![Just(None), (1..3_000u64).prop_map(Some)])
            .prop_map(|(adopts, probation)| Action::Promote(adopts, probation)),
        // A probation's rollback moves connections back to the old child.
        1 => child.clone().prop_map(Action::CanStandBy),
        1 => child.clone().prop_map(Action::Unhealthy),
        1 => Just(Action::RollbackCmd),
        2 => (child.clone(), prop_oneof![Just(0), Just(1), Just(-9)]).prop_map(|(child, code)| Action::Exit { child, code }),
        2 => prop_oneof![0..300u64, 0..3_000u64].prop_map(Action::Advance),
        1 => child.clone().prop_map(Action::Garbage),
        2 => (child, 0u64..40).prop_map(|(child, free)| Action::Room(child, free)),
        1 => Just(Action::Stop),
        1 => Just(Action::Upgrade),
        1 => prop::bool::weighted(0.8).prop_map(Action::Probed),
        1 => prop::bool::weighted(0.8).prop_map(Action::Exec),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 5_000,
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    /// From a reload whose children both adopt connections, any sequence keeps the
    /// promises of moving them at every step: each connection handed over is forwarded
    /// or returned in the same step, never both returned to its sender and taken by its
    /// receiver, answered once, never lost with a receiver that exits while its sender
    /// runs, and never more on their way than the cap.
    #[test]
    fn every_interleaving_of_moving_connections_keeps_the_promises(
        actions in prop::collection::vec(moving_action(), 0..50),
    ) {
        let (mut d, _, _) = moving();
        for action in actions {
            if d.m.done().is_some() {
                break;
            }
            play(&mut d, action);
        }
        if d.m.done().is_none() {
            d.finish();
        }
    }
}

#[test]
fn toward_state_version_2_an_upgrade_waits_for_what_is_held_with_the_senders_paused() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let (_, new) = d.upgraded_child();
    d.adopts(new);
    // Past the cap (4 here): two are held, their fds in the shell.
    d.hand(first, 6);
    assert_eq!(d.conns.held.len(), 2);
    assert!(d.m.paused_senders().is_empty(), "nothing to pause yet");
    d.probe_answer(Ok(2));
    assert_eq!(d.exec, None, "two connections are held here");
    assert_eq!(
        d.m.paused_senders(),
        BTreeSet::from([first]),
        "the old child's hand-overs wait in its channel meanwhile"
    );
    // Answers make room: the held go on, and the exec follows at once.
    assert!(d.answer_first(new, true));
    assert_eq!(d.exec, None);
    assert!(d.answer_first(new, true));
    assert_eq!(d.exec, Some(2));
    assert!(d.conns.returned.is_empty(), "nothing was given back");
    d.exec(true);
    assert!(
        d.m.paused_senders().is_empty(),
        "the next image reads them again"
    );
    d.finish();
}

#[test]
fn toward_state_version_1_an_upgrade_re_executes_once_nothing_moves() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let (client, new) = d.upgraded_child();
    d.adopts(new);
    d.hand(first, 2);
    assert_eq!(d.conns.inbox[&new].len(), 2);
    d.probe_answer(Ok(1));
    assert!(d.exec.is_none(), "two connections are on their way");
    // What is handed over meanwhile moves too, as at a reload: this image knows who
    // adopts it.
    d.hand(first, 1);
    assert_eq!(d.conns.inbox[&new].len(), 3);
    assert!(d.conns.returned.is_empty());
    for _ in 0..3 {
        assert!(d.answer_first(new, true));
    }
    assert!(d.exec.is_none(), "the old child may still hand more over");
    d.exit(first, WaitStatus::Code(0));
    assert_eq!(d.exec, Some(1), "nothing moves any more");
    d.exec(true);
    assert!(matches!(d.answer(client), Some(Response::Upgraded(_))));
    assert_eq!(d.conns.adopted.len(), 3);

    // An old child that does not end, and a receiver that never answers, hold it back
    // no longer than the old child's lameduck and then the time to take one.
    let (mut d, first) = Driver::serving(settings(false, true));
    let (_, new) = d.upgraded_child();
    d.adopts(new);
    d.hand(first, 1);
    d.probe_answer(Ok(1));
    assert!(d.exec.is_none());
    d.advance(2_000 + d.m.settings.take_ms);
    assert!(
        d.exec.is_some(),
        "it went ahead after the lameduck and {} ms",
        d.m.settings.take_ms
    );
    d.exec(true);
    d.finish();
}

#[test]
fn toward_state_version_2_an_upgrade_re_executes_at_once_and_the_next_image_goes_on_relaying() {
    let (mut d, first) = Driver::serving(settings(false, true));
    let (client, new) = d.upgraded_child();
    d.adopts(new);
    d.hand(first, 2);
    assert_eq!(d.conns.inbox[&new].len(), 2);
    d.probe_answer(Ok(2));
    assert_eq!(
        d.exec,
        Some(2),
        "version 2 carries what is on its way: nothing to wait for"
    );
    d.exec(true);
    assert!(matches!(d.answer(client), Some(Response::Upgraded(_))));
    // The next image knows who adopts, and what is on its way.
    for _ in 0..2 {
        assert!(d.answer_first(new, true));
    }
    d.hand(first, 1);
    assert_eq!(d.conns.inbox[&new].len(), 1, "relayed by the next image");
    assert!(d.answer_first(new, true));
    assert_eq!(d.conns.adopted.len(), 3);
    assert!(d.conns.returned.is_empty() && d.conns.forgotten.is_empty());
    d.exit(first, WaitStatus::Code(0));
    assert!(
        d.logs
            .iter()
            .any(|l| l.ends_with("; 3 connections moved to the new child")),
        "{:?}",
        d.logs
    );
    // A receiver that stops answering after the exec is recalled from, in time.
    let (mut d, first) = Driver::serving(settings(false, true));
    let (_, new) = d.upgraded_child();
    d.adopts(new);
    d.hand(first, 1);
    d.probe_answer(Ok(2));
    d.exec(true);
    d.m.handle_timeout(d.now + d.m.settings.take_ms);
    assert!(d.recalled(), "the next image recalls what it carried");
}

// --- the upgrade state's golden bytes ---------------------------------------------------

/// The states an upgrade may hand over, named: one of each situation the machine can
/// be in, so that every type of the state is in the golden bytes.
fn golden_states() -> Vec<(&'static str, Driver)> {
    // (It can stand by: only version 3 says so.)
    let (mut serving, first) = Driver::serving(settings(true, true));
    serving.msg(first, ChildMsg::CanStandBy);
    let (mut reloading, _) = Driver::serving(settings(true, true));
    reloading.reload("/bin/next");
    let (mut starting_new, _) = Driver::serving(settings(false, true));
    starting_new.reload("/bin/next");
    starting_new.prepared(true, 2);
    let new = starting_new.incoming();
    starting_new.msg(new, hello(true, 2_000));
    let (mut moving, old, new) = moving();
    moving.hand(old, 2);
    assert!(moving.answer_first(new, true));
    let (mut upgrading, _) = Driver::serving(settings(false, true));
    upgrading.upgrade("/bin/next");
    let mut idle = Driver::new(dev());
    let first = idle.current();
    idle.exit(first, WaitStatus::Code(101));
    let (mut backoff, first) = Driver::serving(settings(true, false));
    backoff.exit(first, WaitStatus::Code(3));
    let (mut stopping, _) = Driver::serving(settings(false, true));
    stopping.request(Request::Stop);
    // Two reloads done (the journal's events, with their steps), and a child's counts.
    let (mut counted, old, new) = self::moving();
    counted.hand(old, 2);
    assert!(counted.answer_first(new, true));
    counted.exit(old, WaitStatus::Code(0));
    let mut buckets = vec![0; crate::control::protocol::HTTP_DURATION_BOUNDS_US.len() + 1];
    buckets[2] = 40;
    counted.msg(
        new,
        ChildMsg::Counts(vec![crate::control::protocol::HttpCounts {
            listener: "http".into(),
            codes: [0, 38, 0, 1, 1],
            bounds_us: crate::control::protocol::HTTP_DURATION_BOUNDS_US.to_vec(),
            buckets,
            sum_us: 600_000,
            open: 3,
        }]),
    );
    // A reload whose new child took a state of 1 MiB and 3 fds.
    let (mut state_taken, _) = Driver::serving(settings(false, true));
    let (old, new) = state_taken.asking();
    state_taken.give(old, 1 << 20, 3, false);
    state_taken.msg(new, ChildMsg::Ready);
    vec![
        ("serving", serving),
        ("reloading.preparing", reloading),
        ("reloading.hello", starting_new),
        ("reloading.moving", moving),
        ("upgrading", upgrading),
        ("dev.idle", idle),
        ("persist.backoff", backoff),
        ("stopping", stopping),
        ("journal.counted", counted),
        ("journal.state", state_taken),
    ]
}

/// The whole handover around a machine's state, with made-up fds.
fn golden_handover(d: &Driver) -> crate::supervisor::handover::Handover {
    use crate::control::protocol::Versions;
    use crate::socket::SocketFile;
    use crate::supervisor::handover::{Handover, HeldChild, HeldClient, HeldFd};
    Handover {
        versions: Versions {
            oldest: 1,
            newest: 3,
        },
        now: d.now,
        dev: d.m.settings.dev,
        state: d.m.state().clone(),
        fds: vec![
            HeldFd {
                key: 1,
                fd: 5,
                file: None,
            },
            HeldFd {
                key: 2,
                fd: 6,
                file: Some(SocketFile::from_parts(
                    "/run/myblog.sock".into(),
                    64768,
                    1234,
                )),
            },
        ],
        children: d
            .m
            .children()
            .map(|c| HeldChild {
                id: c.id,
                pid: c.pid,
                channel: 7,
                pidfd: Some(8),
                version: Some(3),
            })
            .collect(),
        control: 3,
        socket: "/run/user/1000/littleboss/myblog.sock".into(),
        lock: 4,
        clients: vec![HeldClient {
            id: ClientId(9),
            fd: 9,
            version: 2,
        }],
        next_client: 10,
        args: vec!["myblog".into(), "--littleboss=start".into()],
        moves: d.m.moves_record(),
    }
}

/// State versions 1 to 4, as this build writes them: what a supervisor of the next
/// release must read when it is asked to upgrade this one (and the earlier versions
/// what this build writes for a binary of a release that reads only those).
#[test]
fn the_upgrade_state_encodes_as_state_versions_1_to_5() {
    use crate::supervisor::handover::{Handover, STATE_VERSION};
    assert_eq!(
        STATE_VERSION, 5,
        "a new state version keeps the golden bytes of the ones before"
    );
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for version in 1..=STATE_VERSION {
        for (name, d) in golden_states() {
            let bytes = golden_handover(&d).encode(version).expect("encodes");
            entries.push((format!("v{version} {name}"), bytes));
        }
    }
    crate::golden::check(
        "upgrade-state.txt",
        "The upgrade state (the handover): `littleboss-handover\\0`, the state version (u16\n\
         LE), then the postcard body. `vN NAME`: state version N, in situation NAME.",
        &entries,
    );
    // And this build reads them back.
    for (name, bytes) in crate::golden::read("upgrade-state.txt") {
        let handover = Handover::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let version = name[1..2].parse().expect("vN NAME");
        assert_eq!(handover.encode(version).expect("encodes"), bytes, "{name}");
        // Versions 3 and later say which children can stand by; the ones before, none.
        let standing = (handover.state.children.values()).any(|c| c.stands_by);
        assert_eq!(
            standing,
            ["v3 serving", "v4 serving", "v5 serving"].contains(&name.as_str()),
            "{name}"
        );
        // Version 4 carries the journal and the counts; the ones before start anew.
        let journal = &handover.state.journal;
        if version < 4 {
            assert!(journal.events.is_empty(), "{name}");
        } else if name.ends_with(" journal.counted") {
            assert_eq!(journal.events.len(), 1, "{name}");
            assert_eq!(handover.state.tally.http["http"].codes, [0, 38, 0, 1, 1]);
            assert_eq!(handover.state.tally.moved, 1);
        }
        // Version 5 carries what a reload's new child took of the state; 4, nothing.
        if name.ends_with(" journal.state") && version >= 4 {
            let took = journal.events.back().and_then(|e| e.state);
            let expected = (version >= 5).then_some((1 << 20, 3));
            assert_eq!(took.map(|t| (t.bytes, t.fds)), expected, "{name}");
        }
    }
}

#[test]
fn a_stop_whose_leftovers_cannot_be_ended_says_so_in_its_exit_code() {
    for (code, stuck, expected) in [(0, false, 0), (0, true, 1), (3, true, 3)] {
        let (mut d, child) = Driver::serving(settings(false, true));
        d.descendants_stuck = stuck;
        let stop = d.request(Request::Stop);
        assert_eq!(d.answer(stop), None, "answered once the children are gone");
        d.exit(child, WaitStatus::Code(code));
        assert!(
            d.descendants_ended,
            "the descendants are ended after the last child"
        );
        assert_eq!(d.m.done(), Some(expected), "child {code}, stuck {stuck}");
        assert_eq!(d.answer(stop), Some(&Response::Stopped { code: expected }));
        let said = format!("stopped, exit code {expected}");
        assert!(d.logs.contains(&said), "{:?}", d.logs);
    }
}

/// Two deadlines due in one instant: the first promotes the new child and retires the
/// old one, whose own settle time was due too. That one is void: the old child stays
/// in lameduck, with its kill deadline, and never counts as ready again.
#[test]
fn a_deadline_handled_after_one_that_moved_its_child_on_is_void() {
    let mut d = Driver::new(dev());
    let old = d.current();
    d.build();
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello(false, 0));
    d.advance(1);
    d.msg(old, hello(false, 2_000));
    d.advance(250);
    assert_eq!(d.current(), new);
    let life = d.m.state().children[&old].life;
    assert_eq!(life, Life::Lameduck { welcomed: true });
    assert!(d.m.state().timers.get(Timer::Kill(old)).is_some());
}

#[test]
fn a_new_child_that_says_it_is_unwell_before_it_is_ready_fails_its_probation_at_once() {
    let (mut d, first) = serving_standing_by(settings(false, true));
    let client = d.reload("/bin/next");
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello_probation(30_000, true));
    d.msg(
        new,
        ChildMsg::Unhealthy {
            reason: "no database".into(),
        },
    );
    assert!(
        d.logs
            .last()
            .is_some_and(|l| l.contains("before it is ready"))
    );
    assert_eq!(d.current(), first, "nothing changed yet");
    d.msg(new, ChildMsg::Ready);
    assert_eq!(d.said(first).last(), Some(&SupervisorMsg::Resume));
    assert_eq!(d.said(new).last(), Some(&SupervisorMsg::Lameduck));
    assert!(
        d.failed(client)
            .contains("after 0 s of probation (warm): unhealthy: no database")
    );
    d.finish();
}

/// A machine with one child serving, for the tests of what reads a state.
#[cfg(feature = "metrics")]
pub(super) fn serving_machine() -> Machine {
    let (mut d, child) = Driver::serving(settings(false, true));
    d.msg(
        child,
        ChildMsg::Counts(vec![crate::control::protocol::HttpCounts {
            listener: "http".into(),
            codes: [0, 5, 0, 0, 1],
            bounds_us: crate::control::protocol::HTTP_DURATION_BOUNDS_US.to_vec(),
            buckets: vec![6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sum_us: 6_000,
            open: 2,
        }]),
    );
    d.m
}

// --- state transfer -----------------------------------------------------------------

impl Driver {
    /// A reload whose new child has said hello (it calls `ready()`) and asked for the
    /// state of the serving one, which offers it.
    fn asking(&mut self) -> (ChildId, ChildId) {
        let old = self.current();
        self.msg(old, ChildMsg::OffersState);
        self.reload("/bin/next");
        self.prepared(true, 1);
        let new = self.incoming();
        self.msg(new, hello(true, 2_000));
        self.msg(new, ChildMsg::StateAsk { timeout_ms: 5_000 });
        (old, new)
    }

    /// `child` gives a state of `size` bytes and `fds` named fds, the fds two a message.
    fn give(&mut self, child: ChildId, size: u64, fds: u32, update: bool) {
        let head = StateHeader {
            size,
            fds,
            from: 0,
            update,
        };
        self.msg(child, ChildMsg::StateGive(head));
        let names: Vec<String> = (0..fds).map(|i| format!("fd{i}")).collect();
        for chunk in names.chunks(2) {
            self.msg(child, ChildMsg::StateFds(chunk.to_vec()));
        }
    }

    /// The state messages `child` was sent, in order.
    fn state_said(&self, child: ChildId) -> Vec<SupervisorMsg> {
        (self.said(child).iter())
            .filter(|m| m.since() >= 6)
            .cloned()
            .collect()
    }
}

fn head(size: u64, fds: u32, from: u32, update: bool) -> SupervisorMsg {
    SupervisorMsg::State(StateHeader {
        size,
        fds,
        from,
        update,
    })
}

fn names(range: std::ops::Range<u32>) -> SupervisorMsg {
    SupervisorMsg::StateFds(range.map(|i| format!("fd{i}")).collect())
}

#[test]
fn a_new_child_takes_the_state_of_the_one_it_replaces_committed_when_it_serves() {
    let (mut d, _) = Driver::serving(settings(false, true));
    let (old, new) = d.asking();
    let (old_pid, new_pid) = (d.procs[&old].pid, d.procs[&new].pid);
    assert_eq!(
        d.state_said(old),
        [SupervisorMsg::StateWanted { successor: new_pid }]
    );
    d.give(old, 1 << 20, 3, false);
    assert_eq!(
        d.state_said(new),
        [head(1 << 20, 3, old_pid, false), names(0..2), names(2..3)]
    );
    assert_eq!(d.states.relayed, 3);
    assert_eq!(
        d.m.transfers.last_bytes(Some(new)),
        None,
        "not committed yet"
    );
    d.msg(new, ChildMsg::Ready);
    assert_eq!(d.current(), new);
    assert_eq!(
        d.state_said(old).last(),
        Some(&SupervisorMsg::StateDone { committed: true })
    );
    assert_eq!(d.states.committed, 1);
    assert_eq!(d.m.transfers.last_bytes(Some(new)), Some(1 << 20));
    // The next reload's child took none: the serving child was given nothing.
    d.reloaded();
    assert_eq!(d.m.transfers.last_bytes(Some(d.current())), None);
}

#[test]
fn with_no_predecessor_or_one_that_offers_nothing_the_answer_is_none_at_once() {
    // The first child has no predecessor.
    let mut d = Driver::new(settings(false, true));
    let first = d.current();
    d.msg(first, hello(true, 2_000));
    d.msg(first, ChildMsg::StateAsk { timeout_ms: 5_000 });
    assert_eq!(
        d.state_said(first),
        [SupervisorMsg::NoState { reason: None }]
    );
    d.msg(first, ChildMsg::Ready);
    // A predecessor that never offered: none, without asking it.
    d.reload("/bin/next");
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello(true, 2_000));
    d.msg(new, ChildMsg::StateAsk { timeout_ms: 5_000 });
    assert_eq!(d.state_said(new), [SupervisorMsg::NoState { reason: None }]);
    assert!(
        d.state_said(first).len() == 1,
        "the old child was not asked"
    );
    // The program of the old child declines: none.
    let (mut d, _) = Driver::serving(settings(false, true));
    let (old, new) = d.asking();
    d.msg(old, ChildMsg::StateNone { reason: None });
    assert_eq!(d.state_said(new), [SupervisorMsg::NoState { reason: None }]);
    assert_eq!(d.m.state().timers.get(Timer::StateAnswer(new)), None);
}

#[test]
fn an_answer_that_does_not_come_in_time_is_an_error_and_a_late_one_is_refused() {
    let (mut d, _) = Driver::serving(settings(false, true));
    let (old, new) = d.asking();
    let old_pid = d.procs[&old].pid;
    d.advance(4_999);
    assert_eq!(d.state_said(new), []);
    d.advance(1);
    assert_eq!(
        d.state_said(new),
        [SupervisorMsg::NoState {
            reason: Some(format!(
                "the process it replaces, pid {old_pid}, did not give its state within 5.0 s"
            ))
        }]
    );
    assert_eq!(
        d.state_said(old).last(),
        Some(&SupervisorMsg::StateDone { committed: false })
    );
    // Its answer after that is closed and logged, and nothing reaches the new child.
    d.give(old, 10, 1, false);
    assert_eq!(d.state_said(new).len(), 1);
    assert!(
        d.logs
            .iter()
            .any(|l| l.contains("a state nobody asked for")),
        "{:?}",
        d.logs
    );
    // The new child goes on to serve, cold.
    d.msg(new, ChildMsg::Ready);
    assert_eq!(d.current(), new);
    assert_eq!(d.states.committed, 0);
}

#[test]
fn a_failed_reload_leaves_the_state_with_its_giver_and_the_next_child_asks_again() {
    let (mut d, _) = Driver::serving(settings(false, true));
    let (old, new) = d.asking();
    d.give(old, 100, 2, false);
    d.exit(new, WaitStatus::Code(1));
    assert_eq!(
        d.state_said(old).last(),
        Some(&SupervisorMsg::StateDone { committed: false })
    );
    assert_eq!(d.current(), old);
    // The next reload's child asks, and the same child is asked again.
    let client = d.reload("/bin/next");
    d.prepared(true, 1);
    let again = d.incoming();
    d.msg(again, hello(true, 2_000));
    d.msg(again, ChildMsg::StateAsk { timeout_ms: 5_000 });
    let new_pid = d.procs[&again].pid;
    assert_eq!(
        d.state_said(old).last(),
        Some(&SupervisorMsg::StateWanted { successor: new_pid })
    );
    d.give(old, 100, 2, false);
    d.msg(again, ChildMsg::Ready);
    assert!(matches!(d.answer(client), Some(Response::Reloaded { .. })));
    assert_eq!(d.states.committed, 1);
}

#[test]
fn a_giver_that_exits_halfway_leaves_the_asker_an_error() {
    let (mut d, _) = Driver::serving(settings(false, true));
    let (old, new) = d.asking();
    d.msg(
        old,
        ChildMsg::StateGive(StateHeader {
            size: 10,
            fds: 4,
            from: 0,
            update: false,
        }),
    );
    d.msg(old, ChildMsg::StateFds(vec!["a".into()]));
    d.exit(old, WaitStatus::Code(0));
    assert!(matches!(
        d.state_said(new).last(),
        Some(SupervisorMsg::NoState { reason: Some(r) }) if r.contains("exited before it had given its state")
    ));
}

#[test]
fn fds_cut_short_end_the_transfer_with_an_error_to_both_and_the_rest_is_closed() {
    let (mut d, _) = Driver::serving(settings(false, true));
    let (old, new) = d.asking();
    d.msg(
        old,
        ChildMsg::StateGive(StateHeader {
            size: 10,
            fds: 5,
            from: 0,
            update: false,
        }),
    );
    d.input(Input::StateCut {
        child: old,
        msg: ChildMsg::StateFds(vec!["a".into(), "b".into()]),
    });
    assert!(matches!(
        d.state_said(new).last(),
        Some(SupervisorMsg::NoState { reason: Some(r) }) if r.contains("out of fds")
    ));
    assert_eq!(
        d.state_said(old).last(),
        Some(&SupervisorMsg::StateDone { committed: false })
    );
    let said = d.state_said(old).len();
    // The three fds still to come are closed as they come, without a word more.
    d.msg(old, ChildMsg::StateFds(vec!["c".into(), "d".into()]));
    d.msg(old, ChildMsg::StateFds(vec!["e".into()]));
    assert_eq!(d.state_said(old).len(), said);
    assert_eq!(d.states.relayed, 1, "only the head went on");
    // Then a give is one nobody asked for.
    d.msg(old, ChildMsg::StateFds(vec!["f".into()]));
    assert_eq!(d.state_said(old).len(), said + 1);
}

#[test]
fn a_state_nobody_asked_for_or_past_the_limits_is_refused() {
    let (mut d, first) = Driver::serving(settings(false, true));
    d.give(first, 10, 1, false);
    assert_eq!(
        d.state_said(first),
        [
            SupervisorMsg::StateDone { committed: false },
            SupervisorMsg::StateDone { committed: false }
        ]
    );
    assert_eq!(d.states.relayed, 0);
    let (mut d, _) = Driver::serving(settings(false, true));
    let (old, new) = d.asking();
    d.msg(
        old,
        ChildMsg::StateGive(StateHeader {
            size: crate::control::protocol::MAX_STATE_BYTES + 1,
            fds: 0,
            from: 0,
            update: false,
        }),
    );
    assert!(matches!(
        d.state_said(new).last(),
        Some(SupervisorMsg::NoState { reason: Some(r) }) if r.contains("at most")
    ));
    // An ask twice, or after ready, is answered with why.
    let (mut d, _) = Driver::serving(settings(false, true));
    let (_, new) = d.asking();
    d.msg(new, ChildMsg::StateAsk { timeout_ms: 5_000 });
    assert!(matches!(
        d.state_said(new).last(),
        Some(SupervisorMsg::NoState { reason: Some(r) }) if r.contains("twice")
    ));
}

#[test]
fn on_probation_the_state_is_committed_at_the_verdict_and_one_later_snapshot_goes_on() {
    let (mut d, old) = serving_standing_by(settings(false, true));
    d.msg(old, ChildMsg::OffersState);
    let client = d.reload("/bin/next");
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello_probation(30_000, true));
    d.msg(new, ChildMsg::StateAsk { timeout_ms: 5_000 });
    d.give(old, 64, 1, false);
    d.msg(new, ChildMsg::Ready);
    assert_eq!(d.m.state().standby_id(), Some(old));
    assert!(
        !d.state_said(old)
            .contains(&SupervisorMsg::StateDone { committed: true }),
        "not committed before the verdict"
    );
    // Standing by, it gives one later snapshot; a second is refused.
    let old_pid = d.procs[&old].pid;
    d.give(old, 80, 0, true);
    assert_eq!(d.state_said(new).last(), Some(&head(80, 0, old_pid, true)));
    d.give(old, 90, 0, true);
    assert_eq!(d.state_said(new).last(), Some(&head(80, 0, old_pid, true)));
    d.advance(30_000);
    assert!(matches!(d.answer(client), Some(Response::Reloaded { .. })));
    assert!(
        d.state_said(old)
            .contains(&SupervisorMsg::StateDone { committed: true })
    );
    // A rollback instead changes nothing: the old child keeps its state.
    let (mut d, old) = serving_standing_by(settings(false, true));
    d.msg(old, ChildMsg::OffersState);
    d.reload("/bin/next");
    d.prepared(true, 1);
    let new = d.incoming();
    d.msg(new, hello_probation(30_000, true));
    d.msg(new, ChildMsg::StateAsk { timeout_ms: 5_000 });
    d.give(old, 64, 0, false);
    d.msg(new, ChildMsg::Ready);
    d.msg(
        new,
        ChildMsg::Unhealthy {
            reason: "no".into(),
        },
    );
    assert_eq!(
        d.state_said(old).last(),
        Some(&SupervisorMsg::StateDone { committed: false })
    );
    assert_eq!(d.states.committed, 0);
}

fn transfer_action() -> impl Strategy<Value = Action> {
    let child = 0usize..4;
    prop_oneof![
        2 => child.clone().prop_map(Action::OffersState),
        2 => (child.clone(), prop_oneof![Just(0u64), 1..6_000u64, Just(u64::MAX)]).prop_map(|(c, t)| Action::StateAsk(c, t)),
        2 => (child.clone(), prop_oneof![Just(0u64), 1..100u64, Just(u64::MAX)], 0u32..4, any::<bool>())
            .prop_map(|(child, size, fds, update)| Action::StateGive { child, size, fds, update }),
        3 => (child.clone(), 0usize..3).prop_map(|(c, n)| Action::StateFds(c, n)),
        1 => child.clone().prop_map(Action::StateNone),
        1 => (child.clone(), 0usize..3).prop_map(|(c, n)| Action::StateCut(c, n)),
        4 => (0u32..5, any::<bool>()).prop_map(|(fds, update)| Action::Transfer { fds, update }),
        3 => Just(Action::Reload),
        3 => prop::bool::weighted(0.9).prop_map(Action::Prepared),
        3 => (child.clone(), prop::bool::weighted(0.9), Just(true), Just(2_000u64))
            .prop_map(|(child, ok, calls_ready, lameduck_ms)| Action::Hello { child, ok, calls_ready, lameduck_ms }),
        3 => child.clone().prop_map(Action::Ready),
        2 => (prop::bool::weighted(0.5), prop_oneof![Just(None), (1..3_000u64).prop_map(Some)])
            .prop_map(|(adopts, probation)| Action::Promote(adopts, probation)),
        1 => child.clone().prop_map(Action::CanStandBy),
        1 => child.clone().prop_map(Action::Unhealthy),
        1 => Just(Action::RollbackCmd),
        2 => (child.clone(), prop_oneof![Just(0), Just(1), Just(-9)]).prop_map(|(child, code)| Action::Exit { child, code }),
        3 => prop_oneof![0..300u64, 0..6_000u64].prop_map(Action::Advance),
        1 => child.prop_map(Action::Garbage),
        1 => Just(Action::Stop),
        1 => Just(Action::Upgrade),
        1 => prop::bool::weighted(0.8).prop_map(Action::Probed),
        1 => prop::bool::weighted(0.8).prop_map(Action::Exec),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 5_000,
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    /// Any sequence of state-transfer messages, reloads, probations, deaths, stops and
    /// upgrades keeps the promises of state transfer at every step: each message's fds
    /// are relayed or closed in the step they came in, once; a child is relayed at most
    /// one state per ask and never more fds than its head said; a transfer is committed
    /// only to a child that serves with no probation left.
    #[test]
    fn every_interleaving_of_state_transfers_keeps_the_promises(
        actions in prop::collection::vec(transfer_action(), 0..50),
    ) {
        let (mut d, _) = Driver::serving(settings(false, true));
        for action in actions {
            if d.m.done().is_some() {
                break;
            }
            play(&mut d, action);
        }
        if d.m.done().is_none() {
            d.finish();
        }
    }
}
