//! The golden bytes of both conversations: every message of the child channel and of
//! the control protocol, at every version from the one that introduced it to this
//! build's newest (`littleboss/tests/golden/child-channel.txt` and `control.txt`).

use std::collections::BTreeMap;

use super::history::{Event, History, Kind, Outcome, TakenState, sample_reload};
use super::protocol::{
    ChildHello, ChildMsg, HTTP_DURATION_BOUNDS_US, HttpCounts, ListenerInfo, PROTOCOL, Parcel,
    Probation, ReloadRequest, Request, Response, StateHeader, Status, SupervisorMsg, TlsParcel,
    Upgraded, encode_at, encode_response,
};
use crate::golden;
use crate::secret::Secret;
use crate::spec::Network;
use zeroize::Zeroizing;

fn parcel(id: u64) -> Parcel {
    Parcel {
        id,
        listener: "http".into(),
        bytes: b"GET / HTTP/1.1\r\nHost: a".to_vec(),
    }
}

/// A TLS parcel, its session made-up bytes (the session's own layout is pinned in
/// `tls-session.txt`).
fn tls_parcel(id: u64) -> TlsParcel {
    TlsParcel {
        parcel: Parcel {
            listener: "https".into(),
            ..parcel(id)
        },
        session: Secret::new(Zeroizing::new(vec![1, 0xa5, 0x5a])),
    }
}

/// One of each child -> supervisor message, named.
fn child_messages() -> Vec<(&'static str, ChildMsg)> {
    vec![
        (
            "Hello",
            ChildMsg::Hello(ChildHello {
                name: "myblog".into(),
                pid: 4300,
                calls_ready: true,
                settle_ms: 250,
                ready_timeout_ms: 30_000,
                lameduck_ms: 2_000,
            }),
        ),
        ("Ready", ChildMsg::Ready),
        ("Finished.Ok", ChildMsg::Finished(Ok(()))),
        (
            "Finished.Err",
            ChildMsg::Finished(Err("certificate chain missing.pem: not found".into())),
        ),
        (
            "Finished.Panicked",
            ChildMsg::Finished(Err("panicked at src/main.rs:4:5: boom".into())),
        ),
        (
            "Adopts",
            ChildMsg::Adopts {
                listener: "http".into(),
            },
        ),
        ("Hand", ChildMsg::Hand(vec![parcel(1), parcel(2)])),
        ("Adopted", ChildMsg::Adopted(vec![7, 300])),
        ("Declined", ChildMsg::Declined(vec![8])),
        ("HandTls", ChildMsg::HandTls(vec![tls_parcel(3)])),
        (
            "HelloProbation",
            ChildMsg::HelloProbation(
                ChildHello {
                    name: "myblog".into(),
                    pid: 4300,
                    calls_ready: true,
                    settle_ms: 250,
                    ready_timeout_ms: 30_000,
                    lameduck_ms: 2_000,
                },
                Probation {
                    ms: 30_000,
                    five_xx_pct: 5,
                    standby: true,
                },
            ),
        ),
        ("CanStandBy", ChildMsg::CanStandBy),
        (
            "Unhealthy",
            ChildMsg::Unhealthy {
                reason: "database unreachable".into(),
            },
        ),
        (
            "ServesErrors",
            ChildMsg::ServesErrors {
                errors: 7,
                responses: 57,
            },
        ),
        (
            "Counts",
            ChildMsg::Counts(vec![HttpCounts {
                listener: "http".into(),
                codes: [0, 1_200, 3, 40, 2],
                bounds_us: HTTP_DURATION_BOUNDS_US.to_vec(),
                buckets: vec![900, 200, 100, 30, 10, 3, 1, 1, 0, 0, 0, 1],
                sum_us: 9_876_543,
                open: 12,
            }]),
        ),
        ("OffersState", ChildMsg::OffersState),
        ("StateAsk", ChildMsg::StateAsk { timeout_ms: 5_000 }),
        ("StateGive", ChildMsg::StateGive(state_header(false))),
        (
            "StateFds",
            ChildMsg::StateFds(vec!["upstream".into(), "cache.db".into()]),
        ),
        ("StateNone", ChildMsg::StateNone { reason: None }),
        (
            "StateNone reason",
            ChildMsg::StateNone {
                reason: Some("the state is 5 GiB; at most 4 GiB".into()),
            },
        ),
    ]
}

/// The head of a state of 1 MiB and two fds.
fn state_header(update: bool) -> StateHeader {
    StateHeader {
        size: 1 << 20,
        fds: 2,
        from: 4242,
        update,
    }
}

/// One of each supervisor -> child message, named.
fn supervisor_messages() -> Vec<(&'static str, SupervisorMsg)> {
    vec![
        (
            "Welcome",
            SupervisorMsg::Welcome {
                listeners: vec![
                    ListenerInfo {
                        name: "http".into(),
                        network: Network::Tcp,
                        addr: Some("127.0.0.1:8080".into()),
                    },
                    ListenerInfo {
                        name: "dns".into(),
                        network: Network::Udp4,
                        addr: None,
                    },
                    ListenerInfo {
                        name: "api".into(),
                        network: Network::Unix,
                        addr: Some("/run/myblog.sock".into()),
                    },
                ],
            },
        ),
        (
            "Refused",
            SupervisorMsg::Refused {
                reason: "it is service \"other\", not \"myblog\"".into(),
            },
        ),
        ("Lameduck", SupervisorMsg::Lameduck),
        (
            "Successor",
            SupervisorMsg::Successor {
                adopts: vec!["http".into()],
            },
        ),
        ("Adopt", SupervisorMsg::Adopt(vec![parcel(11)])),
        ("AdoptTls", SupervisorMsg::AdoptTls(vec![tls_parcel(12)])),
        ("Taken", SupervisorMsg::Taken(vec![1, 2])),
        ("Returned", SupervisorMsg::Returned(vec![3])),
        ("Recall", SupervisorMsg::Recall(vec![11])),
        ("Standby", SupervisorMsg::Standby),
        ("Resume", SupervisorMsg::Resume),
        ("OnProbation", SupervisorMsg::OnProbation { ms: 30_000 }),
        (
            "StateWanted",
            SupervisorMsg::StateWanted { successor: 4300 },
        ),
        ("State", SupervisorMsg::State(state_header(false))),
        ("State update", SupervisorMsg::State(state_header(true))),
        (
            "StateFds",
            SupervisorMsg::StateFds(vec!["upstream".into(), "cache.db".into()]),
        ),
        ("NoState", SupervisorMsg::NoState { reason: None }),
        (
            "NoState reason",
            SupervisorMsg::NoState {
                reason: Some("the process it replaces, pid 4242, did not answer within 5s".into()),
            },
        ),
        ("StateDone", SupervisorMsg::StateDone { committed: true }),
    ]
}

fn reload_request() -> ReloadRequest {
    ReloadRequest {
        path: b"/usr/local/bin/myblog".to_vec(),
        args: Some(vec![b"myblog".to_vec(), b"--verbose".to_vec()]),
        listeners: vec![
            ("https".into(), ":8443".into()),
            ("spare".into(), String::new()),
        ],
    }
}

fn requests() -> Vec<(&'static str, Request)> {
    vec![
        ("Status", Request::Status),
        ("Stop", Request::Stop),
        ("Reload", Request::Reload(reload_request())),
        (
            "Reload.KeepArgs",
            Request::Reload(ReloadRequest {
                args: None,
                listeners: Vec::new(),
                ..reload_request()
            }),
        ),
        ("Upgrade", Request::Upgrade(reload_request())),
        ("Promote", Request::Promote),
        ("Rollback", Request::Rollback),
        ("History", Request::History),
        ("Metrics", Request::Metrics),
    ]
}

fn status() -> Status {
    Status {
        name: "myblog".into(),
        protocol: 3,
        protocols: [1, 3],
        supervisor_pid: 4242,
        supervisor_started: "2026-12-04T01:50:58Z".into(),
        supervisor_path: Some("/usr/local/bin/myblog".into()),
        upgrades: 2,
        lameduck_ms: 2_000,
        hello_timeout_ms: 30_000,
        child_pid: Some(4300),
        child_path: Some("/usr/local/bin/myblog".into()),
        child_args: vec!["myblog".into(), "--https=[::]:443".into()],
        child_started: Some("2026-12-04T01:51:00Z".into()),
        previous_path: Some("/usr/local/bin/myblog.old".into()),
        reloads: 5,
        failures: 1,
        restarts: 0,
        state: "running".into(),
        listeners: BTreeMap::from([("https".into(), "tcp:[::]:443".into())]),
        standby_pid: None,
        probation_ends: None,
        last_reload_state_bytes: None,
    }
}

/// A status during a probation (protocol 4).
fn status_on_probation() -> Status {
    Status {
        protocol: 4,
        protocols: [1, 4],
        state: "probation".into(),
        standby_pid: Some(4242),
        probation_ends: Some("2026-12-04T01:51:30Z".into()),
        ..status()
    }
}

/// A status after a reload whose new child took a state of 1 MiB (protocol 6).
fn status_with_state() -> Status {
    Status {
        protocol: 6,
        protocols: [1, 6],
        last_reload_state_bytes: Some(1 << 20),
        ..status()
    }
}

/// The journal's events as a `History` reply of protocol 5 has them.
fn history() -> History {
    History {
        omitted: 3,
        events: vec![
            sample_reload(41),
            Event {
                seq: 42,
                kind: Kind::Rollback,
                outcome: Some(Outcome::Succeeded),
                started_ms: 1_764_756_300_000,
                duration_ms: None,
                old_pid: Some(4300),
                new_pid: Some(4242),
                path: Some("/srv/myblog".into()),
                reason: Some("unhealthy: database unreachable".into()),
                steps: None,
                connections: None,
                count: None,
                state: None,
            },
        ],
    }
}

/// The responses, and the version each first exists in.
fn responses() -> Vec<(&'static str, u16, Response)> {
    vec![
        ("Status", 1, Response::Status(Box::new(status()))),
        ("Stopped", 1, Response::Stopped { code: 0 }),
        ("Stopped.Failed", 1, Response::Stopped { code: -1 }),
        (
            "Reloaded",
            1,
            Response::Reloaded {
                old_pid: Some(4300),
                new_pid: 4311,
                ms: 4,
            },
        ),
        (
            "Reloaded.NoOld",
            1,
            Response::Reloaded {
                old_pid: None,
                new_pid: 4311,
                ms: 4,
            },
        ),
        (
            "Failed",
            1,
            Response::Failed {
                reason: "another reload is under way".into(),
            },
        ),
        (
            "Upgraded",
            2,
            Response::Upgraded(Upgraded {
                old_pid: Some(4300),
                new_pid: 4311,
                ms: 9,
                supervisor_pid: 4242,
                path: "/usr/local/bin/myblog".into(),
                from: 2,
                to: 3,
            }),
        ),
        (
            "Status.Probation",
            4,
            Response::Status(Box::new(status_on_probation())),
        ),
        (
            "OnProbation",
            4,
            Response::OnProbation {
                old_pid: Some(4242),
                new_pid: 4300,
                ms: 7,
                ends_ms: 30_000,
            },
        ),
        (
            "Promoted",
            4,
            Response::Promoted {
                pid: 4300,
                after_ms: 3_100,
            },
        ),
        ("RolledBack", 4, Response::RolledBack { pid: 4242 }),
        (
            "Refused",
            4,
            Response::Refused {
                reason: "no reload is on probation".into(),
            },
        ),
        ("History", 5, Response::History(history())),
        (
            "Metrics",
            5,
            Response::Metrics {
                text: "# TYPE littleboss_upgrades_total counter\nlittleboss_upgrades_total 2\n"
                    .into(),
            },
        ),
        (
            "Status.State",
            6,
            Response::Status(Box::new(status_with_state())),
        ),
        (
            "History.State",
            6,
            Response::History(History {
                omitted: 0,
                events: vec![
                    Event {
                        state: Some(TakenState {
                            bytes: 1 << 20,
                            fds: 3,
                        }),
                        ..sample_reload(43)
                    },
                    Event {
                        kind: Kind::Upgrade,
                        state: Some(TakenState {
                            bytes: 4096,
                            fds: 0,
                        }),
                        ..sample_reload(44)
                    },
                ],
            }),
        ),
    ]
}

/// `vNAME` entries from `since` to [`PROTOCOL`].
fn versions(name: &str, since: u16, encode: impl Fn(u16) -> Vec<u8>) -> Vec<(String, Vec<u8>)> {
    (since..=PROTOCOL)
        .map(|v| (format!("v{v} {name}"), encode(v)))
        .collect()
}

#[test]
fn the_child_channel_encodes_as_it_always_has() {
    let mut entries = Vec::new();
    for (name, msg) in child_messages() {
        entries.extend(versions(&format!("child {name}"), msg.since(), |v| {
            encode_at(v, &msg)
        }));
    }
    for (name, msg) in supervisor_messages() {
        entries.extend(versions(&format!("supervisor {name}"), msg.since(), |v| {
            encode_at(v, &msg)
        }));
    }
    golden::check(
        "child-channel.txt",
        "The child channel: one message a packet, `[version: u16 LE][postcard body]`.\n\
         `vN child NAME` goes from the child to the supervisor, `vN supervisor NAME` back.",
        &entries,
    );
}

#[test]
fn the_control_protocol_encodes_as_it_always_has() {
    let mut entries = Vec::new();
    for (name, request) in requests() {
        entries.extend(versions(&format!("request {name}"), request.since(), |v| {
            encode_at(v, &request)
        }));
    }
    for (name, since, response) in responses() {
        entries.extend(versions(&format!("response {name}"), since, |v| {
            encode_response(v, &response)
        }));
    }
    golden::check(
        "control.txt",
        "The control protocol: each message framed as `[length: u32 LE][message]` (the frame\n\
         is not shown here), a message `[version: u16 LE][postcard body]`. A response of\n\
         version 1 has the layout of protocol 1 (its Status has fewer fields).",
        &entries,
    );
}

/// The golden bytes decode to the messages they were made from: what a peer of another
/// release sends is read.
#[test]
fn the_golden_bytes_decode() {
    use super::protocol::{Versions, decode, decode_any_response};
    let all = Versions {
        oldest: 1,
        newest: PROTOCOL,
    };
    let channel = golden::read("child-channel.txt");
    for (name, msg) in child_messages() {
        for v in msg.since()..=PROTOCOL {
            let bytes = &channel[&format!("v{v} child {name}")];
            assert_eq!(
                decode::<ChildMsg>(bytes, all),
                Ok((v, msg.clone())),
                "{name}"
            );
        }
    }
    for (name, msg) in supervisor_messages() {
        for v in msg.since()..=PROTOCOL {
            let bytes = &channel[&format!("v{v} supervisor {name}")];
            assert_eq!(
                decode::<SupervisorMsg>(bytes, all),
                Ok((v, msg.clone())),
                "{name}"
            );
        }
    }
    let control = golden::read("control.txt");
    for (name, request) in requests() {
        for v in request.since()..=PROTOCOL {
            let bytes = &control[&format!("v{v} request {name}")];
            assert_eq!(
                decode::<Request>(bytes, all),
                Ok((v, request.clone())),
                "{name}"
            );
        }
    }
    for (name, since, response) in responses() {
        for v in since.max(2)..=PROTOCOL {
            let bytes = &control[&format!("v{v} response {name}")];
            assert_eq!(
                decode_any_response(bytes),
                Ok((v, response.clone())),
                "{name}"
            );
        }
    }
}

/// What protocol 6 adds (the state a reload's new child took) is not in the layouts of
/// the versions before: a status or a history that has it is, to a client of protocol
/// 5 or before, the very bytes it always was.
#[test]
fn the_state_taken_leaves_the_layouts_before_protocol_6_as_they_were() {
    let control = golden::read("control.txt");
    let took = Status {
        last_reload_state_bytes: Some(1 << 20),
        ..status()
    };
    for v in 1..=5 {
        let bytes = encode_response(v, &Response::Status(Box::new(took.clone())));
        assert_eq!(bytes, control[&format!("v{v} response Status")], "v{v}");
    }
    let mut with_states = history();
    for (i, event) in with_states.events.iter_mut().enumerate() {
        event.state = Some(TakenState {
            bytes: 100 + i as u64,
            fds: 1,
        });
    }
    let bytes = encode_response(5, &Response::History(with_states));
    assert_eq!(bytes, control["v5 response History"]);
}
