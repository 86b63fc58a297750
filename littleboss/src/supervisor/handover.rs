//! What crosses the exec when the supervisor upgrades itself: its whole state, the fds
//! the state refers to, the children's channels and pidfds, the control socket, the
//! lock, and the connection of the client that asked.
//!
//! The fds stay open across `execve` (their close-on-exec flag is cleared just before
//! it) at the numbers the handover lists; the handover itself is a file in memory whose
//! fd the new image finds in [`HANDOVER_ENV`]. It is laid out as
//! `[MAGIC][state version: u16 LE][postcard body]`; a binary that cannot read it says
//! so when it is probed ([`super::upgrade`]), before any exec.

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use rustix::io::FdFlags;
use serde::{Deserialize, Serialize};

use crate::control::protocol::Versions;
use crate::environ;
use crate::socket::SocketFile;

use super::machine::{ChildId, ClientId, State, Time};
use super::state::FdKey;

/// The variable that gives the new image the handover's fd.
pub(crate) const HANDOVER_ENV: &str = "LITTLEBOSS_HANDOVER_FD";

/// The variable that names the process the handover is for: the same pid, since exec
/// keeps it; a process that inherited the variables by mistake ignores them.
pub(crate) const HANDOVER_PID_ENV: &str = "LITTLEBOSS_HANDOVER_PID";

/// The first bytes of a handover.
const MAGIC: &[u8; 20] = b"littleboss-handover\0";

/// The layout of [`Handover`] this build writes and reads. A change to the machine's
/// [`State`] that an older build cannot read changes it.
pub(crate) const STATE_VERSION: u16 = 1;

/// For tests: the state version this build reads instead of [`STATE_VERSION`], so that a
/// refusal of the state can be tried between builds of one release.
pub(crate) const TEST_STATE_VERSION_ENV: &str = "LITTLEBOSS_TEST_STATE_VERSION";

fn reads() -> u16 {
    environ::var(TEST_STATE_VERSION_ENV)
        .and_then(|v| v.to_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(STATE_VERSION)
}

/// Everything the next image needs.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Handover {
    /// The protocol versions the writer speaks.
    pub versions: Versions,
    /// The machine's clock when it was written (the next image's time 0 plus this).
    pub now: Time,
    pub dev: bool,
    pub state: State,
    pub fds: Vec<HeldFd>,
    pub children: Vec<HeldChild>,
    /// The bound control socket, and its path.
    pub control: RawFd,
    pub socket: PathBuf,
    /// The flock on `<name>.lock`.
    pub lock: RawFd,
    /// Clients waiting for their answer on a connection of their own (the upgrade's).
    pub clients: Vec<HeldClient>,
    /// The number the next control connection gets.
    pub next_client: u64,
    /// The supervisor's own command line, as it was started.
    pub args: Vec<OsString>,
}

/// One fd of the table.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeldFd {
    pub key: FdKey,
    pub fd: RawFd,
    pub file: Option<SocketFile>,
}

/// A running child: it stays the supervisor's child across the exec.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeldChild {
    pub id: ChildId,
    pub pid: u32,
    pub channel: RawFd,
    pub pidfd: Option<RawFd>,
    /// The protocol version of its hello, if it has said hello.
    pub version: Option<u16>,
}

/// A client's connection.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeldClient {
    pub id: ClientId,
    pub fd: RawFd,
    pub version: u16,
}

impl Handover {
    /// `[MAGIC][STATE_VERSION][body]`.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = MAGIC.to_vec();
        out.extend(STATE_VERSION.to_le_bytes());
        let body = postcard::to_stdvec(self).map_err(|e| format!("encoding the state: {e}"))?;
        out.extend(body);
        Ok(out)
    }

    /// Reads a handover written by this build or one with the same state version.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Handover, String> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or("it is not a littleboss handover")?;
        let (version, body) = rest
            .split_first_chunk::<2>()
            .ok_or("the handover is cut short")?;
        let version = u16::from_le_bytes(*version);
        let reads = reads();
        if version != reads {
            return Err(format!(
                "the running supervisor's state is version {version}; this binary reads version {reads}"
            ));
        }
        match postcard::take_from_bytes::<Handover>(body) {
            Ok((handover, [])) => Ok(handover),
            Ok((_, rest)) => Err(format!("{} bytes after the state", rest.len())),
            Err(e) => Err(format!("the state does not decode: {e}")),
        }
    }

    /// Every fd the handover lists, once each.
    pub(crate) fn raw_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.fds.iter().map(|f| f.fd).collect();
        for child in &self.children {
            fds.push(child.channel);
            fds.extend(child.pidfd);
        }
        fds.extend(self.clients.iter().map(|c| c.fd));
        fds.push(self.control);
        fds.push(self.lock);
        fds
    }
}

/// A file in memory holding `bytes`, at offset 0, close-on-exec.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn in_memory(bytes: &[u8]) -> std::io::Result<std::fs::File> {
    let fd = rustix::fs::memfd_create("littleboss-handover", rustix::fs::MemfdFlags::CLOEXEC)?;
    let file = std::fs::File::from(fd);
    filled(file, bytes)
}

/// Where there is no `memfd`: a file in the temporary directory, removed at once.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn in_memory(bytes: &[u8]) -> std::io::Result<std::fs::File> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "littleboss-handover-{}-{nanos}",
        std::process::id()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    filled(file, bytes)
}

fn filled(mut file: std::fs::File, bytes: &[u8]) -> std::io::Result<std::fs::File> {
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file)
}

/// Sets or clears close-on-exec on each fd; the first error, after trying them all.
pub(crate) fn set_cloexec(fds: &[BorrowedFd<'_>], on: bool) -> std::io::Result<()> {
    let flags = if on {
        FdFlags::CLOEXEC
    } else {
        FdFlags::empty()
    };
    let mut result = Ok(());
    for fd in fds {
        if let Err(e) = rustix::io::fcntl_setfd(fd, flags) {
            result = result.and(Err(e.into()));
        }
    }
    result
}

/// The handover that the previous image of this process left, if this process is
/// one: the variables name this pid, and the fd holds a handover.
pub(crate) fn take() -> Option<Result<(Handover, Fds), String>> {
    let fd = environ::var(HANDOVER_ENV)?;
    let ours = std::process::id().to_string();
    if environ::var(HANDOVER_PID_ENV).and_then(|p| p.to_str()) != Some(ours.as_str()) {
        return None;
    }
    Some(read(fd.to_str().and_then(|v| v.parse::<RawFd>().ok())))
}

fn read(fd: Option<RawFd>) -> Result<(Handover, Fds), String> {
    let fd = fd
        .filter(|fd| *fd > 2)
        .ok_or_else(|| format!("{HANDOVER_ENV} is not an fd number"))?;
    let raw_open = |fd: RawFd| {
        // SAFETY: only looks at the fd's flags; no ownership is taken.
        rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(fd) }).is_ok()
    };
    if !raw_open(fd) {
        return Err(format!("{HANDOVER_ENV}={fd} is not open"));
    }
    // SAFETY: the previous image of this very process (the pid in HANDOVER_PID_ENV)
    // left this fd open across the exec for this image, and nothing in this process
    // has taken it: `take` runs once, before anything else of littleboss.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("reading the handover: {e}"))?;
    drop(file);
    let handover = Handover::decode(&bytes)?;
    let mut listed = handover.raw_fds();
    listed.sort_unstable();
    if listed.windows(2).any(|w| w[0] == w[1]) || listed.iter().any(|fd| *fd <= 2 || !raw_open(*fd))
    {
        return Err("the handover lists an fd twice, or one that is not open".to_string());
    }
    Ok((handover, Fds(listed)))
}

/// The fds of a handover, each open and listed once, to be owned one by one.
#[derive(Debug)]
pub(crate) struct Fds(Vec<RawFd>);

impl Fds {
    /// The fd `raw`, owned and close-on-exec again; `None` if the handover did not list
    /// it or it was taken already.
    pub(crate) fn take(&mut self, raw: RawFd) -> Option<OwnedFd> {
        let at = self.0.iter().position(|fd| *fd == raw)?;
        self.0.swap_remove(at);
        // SAFETY: the previous image of this process left `raw` open across the exec
        // for this image and listed it in the handover once (checked in `read`);
        // removing it from the list above means it is owned here once.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let _ = rustix::io::fcntl_setfd(&fd, FdFlags::CLOEXEC);
        Some(fd)
    }
}

impl Drop for Fds {
    /// Closes what nobody took.
    fn drop(&mut self) {
        while let Some(raw) = self.0.pop() {
            // SAFETY: as in `take`: listed once, open, and not taken.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        }
    }
}

/// The fd's number, for the handover.
pub(crate) fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}
