//! The upgrade state of version 1: the bytes a supervisor hands to its next image, as
//! releases up to 0.2 write them (pinned in `littleboss/tests/golden/upgrade-state.txt`).
//!
//! These types are the layout and nothing else: they mirror the machine's state as it
//! was when version 1 was frozen, field for field and variant for variant, since
//! postcard writes fields in order and variants by index, with no names. They import
//! nothing of the crate's. The machine's own types may change freely: the supervisor's
//! handover converts from and to them (`supervisor/handover/v1.rs`), and a change the
//! layout cannot carry is a new state version (PROTOCOL.md, "How versions change"),
//! never an edit here.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The whole handover of version 1.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandoverV1 {
    pub(crate) versions: VersionsV1,
    pub(crate) now: u64,
    pub(crate) dev: bool,
    pub(crate) state: StateV1,
    pub(crate) fds: Vec<HeldFdV1>,
    pub(crate) children: Vec<HeldChildV1>,
    pub(crate) control: RawFd,
    pub(crate) socket: PathBuf,
    pub(crate) lock: RawFd,
    pub(crate) clients: Vec<HeldClientV1>,
    pub(crate) next_client: u64,
    pub(crate) args: Vec<OsString>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct VersionsV1 {
    pub(crate) oldest: u16,
    pub(crate) newest: u16,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeldFdV1 {
    pub(crate) key: u64,
    pub(crate) fd: RawFd,
    pub(crate) file: Option<SocketFileV1>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SocketFileV1 {
    pub(crate) path: PathBuf,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeldChildV1 {
    pub(crate) id: u64,
    pub(crate) pid: u32,
    pub(crate) channel: RawFd,
    pub(crate) pidfd: Option<RawFd>,
    pub(crate) version: Option<u16>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeldClientV1 {
    pub(crate) id: u64,
    pub(crate) fd: RawFd,
    pub(crate) version: u16,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StateV1 {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) started: SystemTime,
    pub(crate) phase: PhaseV1,
    pub(crate) retiring: Vec<ChildV1>,
    pub(crate) listeners: Vec<ListenerRecordV1>,
    pub(crate) previous: Option<ProgramRecordV1>,
    pub(crate) reloads: u64,
    pub(crate) failures: u64,
    pub(crate) restarts: u64,
    pub(crate) backoff_ms: u64,
    pub(crate) next_child: u64,
    pub(crate) announced: bool,
    pub(crate) build_pending: bool,
    pub(crate) supervisor_path: PathBuf,
    pub(crate) upgrades: u64,
    pub(crate) upgrade: Option<UpgradeV1>,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PhaseV1 {
    Up {
        current: CurrentV1,
        reload: Option<ReloadV1>,
    },
    Stopping {
        waiters: Vec<u64>,
        serving: Option<u64>,
        cancelled: Option<u64>,
        code: Option<i32>,
    },
    Done {
        code: i32,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum CurrentV1 {
    Child(ChildV1),
    Backoff {
        program: ProgramRecordV1,
        at: u64,
    },
    Exited {
        program: ProgramRecordV1,
        pid: u32,
        exit: ExitV1,
        was_ready: bool,
    },
    Idle {
        program: ProgramRecordV1,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ReloadV1 {
    pub(crate) waiter: Option<u64>,
    pub(crate) since: u64,
    pub(crate) incoming: IncomingV1,
    pub(crate) queued: Vec<AskedV1>,
    pub(crate) build: bool,
    pub(crate) upgrade: bool,
    pub(crate) vetting: Option<(ProgramRecordV1, Vec<ListenerRecordV1>)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UpgradeV1 {
    pub(crate) waiter: Option<u64>,
    pub(crate) program: ProgramRecordV1,
    pub(crate) old_pid: Option<u32>,
    pub(crate) new_pid: u32,
    pub(crate) ms: u64,
    pub(crate) step: UpgradeStepV1,
    pub(crate) from: u16,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum UpgradeStepV1 {
    Probing,
    Exec,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AskedV1 {
    pub(crate) waiter: Option<u64>,
    pub(crate) path: PathBuf,
    pub(crate) args: Option<Vec<OsString>>,
    pub(crate) overrides: Vec<(String, String)>,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum IncomingV1 {
    Preparing,
    Child(ChildV1),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChildV1 {
    pub(crate) id: u64,
    pub(crate) pid: u32,
    pub(crate) program: ProgramRecordV1,
    pub(crate) argv: Vec<OsString>,
    pub(crate) listeners: Vec<ListenerRecordV1>,
    pub(crate) started: Option<SystemTime>,
    pub(crate) started_at: u64,
    pub(crate) life: LifeV1,
    pub(crate) lameduck_ms: u64,
    pub(crate) killed_because: Option<String>,
    pub(crate) finished: Option<Result<(), String>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum LifeV1 {
    Spawning,
    Started { by: u64 },
    Settling { at: u64 },
    AwaitingReady { by: u64 },
    Ready,
    Lameduck { kill_at: u64, welcomed: bool },
    Killed,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExitV1 {
    pub(crate) status: WaitStatusV1,
    pub(crate) killed_because: Option<String>,
    pub(crate) ran: Duration,
    pub(crate) finished: Option<Result<(), String>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WaitStatusV1 {
    Code(i32),
    Signal(i32),
    Unknown,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ListenerRecordV1 {
    pub(crate) name: String,
    pub(crate) network: NetworkV1,
    pub(crate) bound: Option<(BoundAddrV1, u64)>,
}

/// The networks of version 1, in the order of their indexes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum NetworkV1 {
    Tcp,
    Tcp4,
    Tcp6,
    Udp,
    Udp4,
    Udp6,
    Unix,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BoundAddrV1 {
    Ip(SocketAddr),
    Unix(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProgramRecordV1 {
    pub(crate) path: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) exe: u64,
}
