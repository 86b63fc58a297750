//! The messages of the child channel and the control socket, and how they are framed.
//!
//! Every message is `[version: u16 little-endian][postcard body]`. A receiver reads the
//! version first and refuses, naming both versions, any message whose version it does
//! not speak, before it decodes anything else; so a supervisor of an older release
//! refuses a newer child or client clearly instead of misreading it. On the control
//! socket (a stream) each message is preceded by its length as a `u32` little-endian,
//! at most [`MAX_CONTROL_FRAME`]. See `PROTOCOL.md` for the message layouts.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::spec::Network;

/// The protocol version this build speaks, on both the channel and the control socket.
pub const PROTOCOL: u16 = 1;

/// The largest control frame accepted (requests and replies are small).
pub(crate) const MAX_CONTROL_FRAME: usize = 64 * 1024;

/// Child -> supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChildMsg {
    /// First message: who the child is and how it wants to be treated.
    Hello(ChildHello),
    /// The program called `Context::ready`.
    Ready,
    /// The program's main returned: `Ok`, or the error it printed.
    Finished(Result<(), String>),
}

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
}

/// What `--littleboss=reload` asks for.
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
}

/// The supervisor's state as `status` and `status-json` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// The service name.
    pub name: String,
    /// The protocol version the supervisor speaks.
    pub protocol: u16,
    /// The supervisor's pid (it never changes).
    pub supervisor_pid: u32,
    /// When the supervisor started, RFC 3339 UTC.
    pub supervisor_started: String,
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
    /// `starting`, `running`, `reloading`, `stopping`, or `idle` (dev mode: no child
    /// serves until the next build lands).
    pub state: String,
    /// Listener name -> `NETWORK:ADDRESS` as bound (`off` if it is off).
    pub listeners: BTreeMap<String, String>,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("message of {0} bytes has no version")]
    Short(usize),
    #[error("peer speaks littleboss protocol {theirs}, this binary speaks {PROTOCOL}")]
    Version { theirs: u16 },
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// `[version][postcard body]`.
pub(crate) fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = PROTOCOL.to_le_bytes().to_vec();
    // Serializing these plain types into a Vec cannot fail; fall back to an empty body
    // (which every receiver refuses) rather than panic.
    out.extend(postcard::to_stdvec(msg).unwrap_or_default());
    out
}

/// Checks the version, then decodes the whole body (trailing bytes are an error).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (version, body) = bytes
        .split_first_chunk::<2>()
        .ok_or(DecodeError::Short(bytes.len()))?;
    let theirs = u16::from_le_bytes(*version);
    if theirs != PROTOCOL {
        return Err(DecodeError::Version { theirs });
    }
    match postcard::take_from_bytes::<T>(body) {
        Ok((msg, [])) => Ok(msg),
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
        assert_eq!(decode::<ChildMsg>(&encode(&hello)).unwrap(), hello);
        let welcome = SupervisorMsg::Welcome {
            listeners: vec![ListenerInfo {
                name: "http".into(),
                network: Network::Tcp,
                addr: Some("127.0.0.1:80".into()),
            }],
        };
        assert_eq!(decode::<SupervisorMsg>(&encode(&welcome)).unwrap(), welcome);
        let reload = Request::Reload(ReloadRequest {
            path: b"/bin/x".to_vec(),
            args: Some(vec![b"x".to_vec()]),
            listeners: vec![("http".into(), ":0".into())],
        });
        assert_eq!(decode::<Request>(&encode(&reload)).unwrap(), reload);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let mut msg = encode(&Request::Status);
        msg[0] = 9;
        assert_eq!(
            decode::<Request>(&msg),
            Err(DecodeError::Version { theirs: 9 })
        );
        assert_eq!(decode::<Request>(&[1]), Err(DecodeError::Short(1)));
        assert!(matches!(
            decode::<Request>(&[1, 0, 200]),
            Err(DecodeError::Malformed(_))
        ));
        let mut long = encode(&Request::Stop);
        long.push(0);
        assert!(matches!(
            decode::<Request>(&long),
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
                let _ = decode::<Request>(&bytes);
                let _ = decode::<Response>(&bytes);
                let _ = decode::<ChildMsg>(&bytes);
                let _ = decode::<SupervisorMsg>(&bytes);
                let framed = with_version(bytes);
                let _ = decode::<Request>(&framed);
                let _ = decode::<Response>(&framed);
                let _ = decode::<ChildMsg>(&framed);
                let _ = decode::<SupervisorMsg>(&framed);
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
                prop_assert_eq!(decode::<Request>(&encode(&request)), Ok(request));
            }

            #[test]
            fn hellos_round_trip(name in ".{0,32}", pid: u32, calls_ready: bool, settle_ms: u64, ready_timeout_ms: u64, lameduck_ms: u64) {
                let hello = ChildMsg::Hello(ChildHello { name, pid, calls_ready, settle_ms, ready_timeout_ms, lameduck_ms });
                prop_assert_eq!(decode::<ChildMsg>(&encode(&hello)), Ok(hello));
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
                prop_assert!(decode::<Request>(&msg[..cut]).is_err());
            }
        }
    }
}
