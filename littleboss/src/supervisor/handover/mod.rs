//! What crosses the exec when the supervisor upgrades itself: its whole state, the fds
//! the state refers to, the children's channels and pidfds, the control socket, the
//! lock, and the connection of the client that asked.
//!
//! The fds stay open across `execve` (their close-on-exec flag is cleared just before
//! it) at the numbers the handover lists; the handover itself is a file in memory whose
//! fd the new image finds in [`HANDOVER_ENV`](crate::environ::HANDOVER_ENV). It is laid out as
//! `[MAGIC][state version: u16 LE][postcard body]`; a binary that cannot read it says
//! so when it is probed ([`super::upgrade`]), before any exec.

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::FileType;
use rustix::io::FdFlags;

use crate::control::protocol::Versions;
use crate::environ::{self, HANDOVER_ENV, HANDOVER_PID_ENV, TEST_STATE_VERSION_ENV};
use crate::socket::SocketFile;
use crate::sys;
use crate::wire::state_v1::HandoverV1;
use crate::wire::state_v2::HandoverV2;
use crate::wire::state_v3::HandoverV3;
use crate::wire::state_v4::HandoverV4;
use crate::wire::state_v5::HandoverV5;

use super::machine::{ChildId, ClientId, MovesRecord, State, Time};
use super::state::FdKey;

mod v1;
mod v2;
mod v3;
mod v4;
mod v5;

#[cfg(test)]
pub(crate) use v1::{through_v1, v1_bytes};
#[cfg(test)]
pub(crate) use v2::moves_through_v2;
#[cfg(test)]
pub(crate) use v4::journal_through_v4;
#[cfg(test)]
pub(crate) use v5::journal_through_v5;

/// The first bytes of a handover.
const MAGIC: &[u8; 20] = b"littleboss-handover\0";

/// The newest layout of [`Handover`] this build writes and reads. Version 1 is
/// [`HandoverV1`], frozen; version 2 is [`HandoverV2`], version 1 followed by the
/// connections moving between children; version 3 is [`HandoverV3`], version 2
/// followed by the children that can stand by; version 4 is [`HandoverV4`], version 3
/// followed by the journal and the counts behind the metrics; version 5 is
/// [`HandoverV5`], version 4 followed by the state each event's new child took. A
/// change that the newest cannot carry is a new version.
pub(crate) const STATE_VERSION: u16 = 5;

/// The state versions this build reads: 1 to [`STATE_VERSION`], or in a build with
/// test hooks only the one [`TEST_STATE_VERSION_ENV`] names, so that a binary that
/// reads only version 1 (as releases up to 0.2 do), or one that reads none of them,
/// can be tried between builds of one release.
fn reads() -> Reads {
    match environ::test_number(TEST_STATE_VERSION_ENV) {
        Some(only) => Reads(only, only),
        None => Reads(1, STATE_VERSION),
    }
}

/// The state versions a build reads, oldest to newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reads(u16, u16);

impl Reads {
    fn contains(self, version: u16) -> bool {
        (self.0..=self.1).contains(&version)
    }
}

impl std::fmt::Display for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reads(one, other) if one == other => write!(f, "version {one}"),
            Reads(oldest, newest) => write!(f, "versions {oldest} to {newest}"),
        }
    }
}

/// Everything the next image needs.
#[derive(Debug)]
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
    /// The connections moving between children (version 2; none in version 1).
    pub moves: MovesRecord,
}

/// One fd of the table.
#[derive(Debug)]
pub(crate) struct HeldFd {
    pub key: FdKey,
    pub fd: RawFd,
    pub file: Option<SocketFile>,
}

/// A running child: it stays the supervisor's child across the exec.
#[derive(Debug)]
pub(crate) struct HeldChild {
    pub id: ChildId,
    pub pid: u32,
    pub channel: RawFd,
    pub pidfd: Option<RawFd>,
    /// The protocol version of its hello, if it has said hello.
    pub version: Option<u16>,
}

/// A client's connection.
#[derive(Debug)]
pub(crate) struct HeldClient {
    pub id: ClientId,
    pub fd: RawFd,
    pub version: u16,
}

impl Handover {
    /// `[MAGIC][version][body]`, in state version `version` (1 to 5: the newest the
    /// next image reads). Version 1 leaves the moves out: the machine re-executes
    /// toward it only once nothing moves. Versions 1 and 2 leave out which children can
    /// stand by: the next image takes them as children that cannot. Versions 1 to 3
    /// leave out the journal and the metrics' counts: the next image starts them anew.
    /// Versions 1 to 4 leave out the state each event's new child took: the next
    /// image's events say none.
    pub(crate) fn encode(&self, version: u16) -> Result<Vec<u8>, HandoverError> {
        let mut out = MAGIC.to_vec();
        out.extend(version.to_le_bytes());
        let v1 = HandoverV1::from_handover(self).map_err(HandoverError::Unfit)?;
        let body = match version {
            1 => postcard::to_stdvec(&v1),
            2 => postcard::to_stdvec(&HandoverV2::from_handover(v1, &self.moves)),
            3 => {
                let v2 = HandoverV2::from_handover(v1, &self.moves);
                postcard::to_stdvec(&HandoverV3::from_handover(v2, self))
            }
            4 => {
                let v2 = HandoverV2::from_handover(v1, &self.moves);
                let v3 = HandoverV3::from_handover(v2, self);
                postcard::to_stdvec(&HandoverV4::from_handover(v3, self))
            }
            5 => {
                let v2 = HandoverV2::from_handover(v1, &self.moves);
                let v3 = HandoverV3::from_handover(v2, self);
                let v4 = HandoverV4::from_handover(v3, self);
                postcard::to_stdvec(&HandoverV5::from_handover(v4, self))
            }
            _ => return Err(HandoverError::Unwritten(version)),
        };
        out.extend(body.map_err(HandoverError::Encode)?);
        Ok(out)
    }

    /// Reads a handover of a state version this build reads.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Handover, HandoverError> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(HandoverError::NotHandover)?;
        let (version, body) = rest
            .split_first_chunk::<2>()
            .ok_or(HandoverError::CutShort)?;
        let version = u16::from_le_bytes(*version);
        let reads = reads();
        if !reads.contains(version) {
            return Err(HandoverError::Version { version, reads });
        }
        let read = match version {
            1 => postcard::take_from_bytes::<HandoverV1>(body)
                .map(|(layout, rest)| (layout.into_handover(), rest)),
            2 => postcard::take_from_bytes::<HandoverV2>(body)
                .map(|(layout, rest)| (layout.into_handover(), rest)),
            3 => postcard::take_from_bytes::<HandoverV3>(body)
                .map(|(layout, rest)| (layout.into_handover(), rest)),
            4 => postcard::take_from_bytes::<HandoverV4>(body)
                .map(|(layout, rest)| (layout.into_handover(), rest)),
            _ => postcard::take_from_bytes::<HandoverV5>(body)
                .map(|(layout, rest)| (layout.into_handover(), rest)),
        };
        match read {
            Ok((handover, [])) => Ok(handover),
            Ok((_, rest)) => Err(HandoverError::Trailing(rest.len())),
            Err(e) => Err(HandoverError::Decode(e)),
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
///
/// It runs once by construction: a second call (a second `run` in one process) gets an
/// error, since the first took the handover's fds.
pub(crate) fn take() -> Option<Result<(Handover, Fds), HandoverError>> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let fd = environ::var(HANDOVER_ENV)?;
    let ours = std::process::id().to_string();
    if environ::var(HANDOVER_PID_ENV).and_then(|p| p.to_str()) != Some(ours.as_str()) {
        return None;
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Some(Err(HandoverError::Taken));
    }
    Some(read(fd.to_str().and_then(|v| v.parse::<RawFd>().ok())))
}

fn read(fd: Option<RawFd>) -> Result<(Handover, Fds), HandoverError> {
    let fd = fd.filter(|fd| *fd > 2).ok_or(HandoverError::NotFd)?;
    if !sys::is_open(fd) {
        return Err(HandoverError::NotOpen(fd));
    }
    // SAFETY: the previous image of this very process (the pid in HANDOVER_PID_ENV)
    // left this fd open across the exec for this image, and nothing in this process
    // has taken it: `take` runs once (its flag), before anything else of littleboss.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(HandoverError::Read)?;
    drop(file);
    let handover = Handover::decode(&bytes)?;
    let mut listed = handover.raw_fds();
    listed.sort_unstable();
    if listed.windows(2).any(|w| w[0] == w[1])
        || listed.iter().any(|fd| *fd <= 2 || !sys::is_open(*fd))
    {
        return Err(HandoverError::BadFds);
    }
    Ok((handover, Fds(listed)))
}

/// Why a handover cannot be written or taken: the state does not fit its layout, the
/// bytes are not a handover of the version this build reads, or its fd or the fds it
/// lists are not what the previous image left.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoverError {
    /// The machine holds something the layout cannot carry.
    #[error("encoding the state: {0}")]
    Unfit(v1::Unfit),
    #[error("encoding the state: {0}")]
    Encode(#[source] postcard::Error),
    #[error("it is not a littleboss handover")]
    NotHandover,
    #[error("the handover is cut short")]
    CutShort,
    /// The state is of a version this build does not read.
    #[error("the running supervisor's state is version {version}; this binary reads {reads}")]
    Version { version: u16, reads: Reads },
    /// A version this build does not write.
    #[error("this build writes upgrade state versions 1 to {STATE_VERSION}, not {0}")]
    Unwritten(u16),
    /// Bytes follow the state.
    #[error("{0} bytes after the state")]
    Trailing(usize),
    #[error("the state does not decode: {0}")]
    Decode(#[source] postcard::Error),
    /// A second run in one process.
    #[error("{HANDOVER_ENV} was taken already by an earlier run in this process")]
    Taken,
    #[error("{HANDOVER_ENV} is not an fd number")]
    NotFd,
    #[error("{HANDOVER_ENV}={0} is not open")]
    NotOpen(RawFd),
    #[error("reading the handover: {0}")]
    Read(#[source] std::io::Error),
    /// The fds the handover lists are not each open and listed once.
    #[error("the handover lists an fd twice, or one that is not open")]
    BadFds,
}

/// The fds of a handover, each open and listed once, to be owned one by one.
#[derive(Debug)]
pub(crate) struct Fds(Vec<RawFd>);

/// What an fd of the handover must be before it is owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// A socket: the control socket, a channel, a client's connection.
    Socket,
    /// A regular file: the lock.
    File,
    /// A socket or a file: an entry of the fd table (a listener or an executable).
    SocketOrFile,
    /// A pidfd: neither a socket nor a directory, pipe or device (an anonymous inode,
    /// or a regular file of pidfs on newer kernels).
    Pidfd,
}

impl FdKind {
    fn admits(self, file_type: FileType) -> bool {
        match self {
            FdKind::Socket => file_type == FileType::Socket,
            FdKind::File => file_type == FileType::RegularFile,
            FdKind::SocketOrFile => {
                matches!(file_type, FileType::Socket | FileType::RegularFile)
            }
            FdKind::Pidfd => matches!(file_type, FileType::Unknown | FileType::RegularFile),
        }
    }
}

impl Fds {
    /// The fd `raw`, owned and close-on-exec again; `None` if the handover did not list
    /// it, it was taken already, or it is not of `kind` (then it stays listed, and is
    /// closed with whatever else nobody took).
    pub(crate) fn take(&mut self, raw: RawFd, kind: FdKind) -> Option<OwnedFd> {
        let at = self.0.iter().position(|fd| *fd == raw)?;
        // SAFETY: `raw` is listed, so it is open (checked in `read`) and not taken; it
        // is only borrowed for the length of the `fstat`.
        let stat = rustix::fs::fstat(unsafe { BorrowedFd::borrow_raw(raw) }).ok()?;
        if !kind.admits(FileType::from_raw_mode(stat.st_mode)) {
            return None;
        }
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

#[cfg(test)]
mod tests {
    use std::os::fd::IntoRawFd;

    use super::*;

    /// A socket (with its peer, which sees it close) and a regular file, their numbers
    /// given up as a handover would list them.
    fn listed() -> (RawFd, std::os::unix::net::UnixStream, RawFd, Fds) {
        let (socket, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let socket = OwnedFd::from(socket).into_raw_fd();
        let file = OwnedFd::from(tempfile::tempfile().unwrap()).into_raw_fd();
        (socket, peer, file, Fds(vec![socket, file]))
    }

    #[test]
    fn an_fd_is_owned_once_and_only_if_it_is_of_the_kind_expected() {
        let (socket, _peer, file, mut fds) = listed();
        assert!(
            fds.take(socket, FdKind::File).is_none(),
            "a socket is no file"
        );
        assert!(
            fds.take(file, FdKind::Socket).is_none(),
            "a file is no socket"
        );
        assert!(
            fds.take(file, FdKind::Pidfd).is_some(),
            "pidfs gives regular files"
        );
        assert!(fds.take(file, FdKind::File).is_none(), "taken already");
        let owned = fds.take(socket, FdKind::SocketOrFile).expect("a socket");
        let flags = rustix::io::fcntl_getfd(&owned).unwrap();
        assert!(flags.contains(FdFlags::CLOEXEC), "close-on-exec again");
        assert!(fds.take(12345, FdKind::Socket).is_none(), "never listed");
    }

    #[test]
    fn what_nobody_took_is_closed() {
        let (socket, mut peer, _file, mut fds) = listed();
        // Refused for its kind: it stays listed, and is closed with the rest.
        assert!(fds.take(socket, FdKind::File).is_none());
        drop(fds);
        let mut byte = [0u8; 1];
        assert_eq!(peer.read(&mut byte).unwrap(), 0, "the socket was closed");
    }

    #[test]
    fn a_number_that_names_nothing_is_refused_without_being_touched() {
        // Far above any fd this process has: fds are numbered lowest first.
        let nothing: RawFd = 1 << 30;
        assert!(!sys::is_open(nothing));
        assert_eq!(
            read(Some(nothing)).unwrap_err().to_string(),
            format!("{HANDOVER_ENV}={nothing} is not open")
        );
        assert_eq!(
            read(Some(2)).unwrap_err().to_string(),
            format!("{HANDOVER_ENV} is not an fd number")
        );
        let file = tempfile::tempfile().unwrap();
        assert!(sys::is_open(file.as_raw_fd()));
    }

    #[test]
    fn a_handover_that_is_not_one_is_refused() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"not a handover").unwrap();
        file.rewind().unwrap();
        let raw = OwnedFd::from(file).into_raw_fd();
        assert_eq!(
            read(Some(raw)).unwrap_err().to_string(),
            "it is not a littleboss handover"
        );
    }

    #[test]
    fn a_handover_of_another_version_says_which() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend((STATE_VERSION + 1).to_le_bytes());
        assert_eq!(
            Handover::decode(&bytes).unwrap_err().to_string(),
            format!(
                "the running supervisor's state is version {}; this binary reads versions 1 to {STATE_VERSION}",
                STATE_VERSION + 1
            )
        );
        assert_eq!(
            Handover::decode(MAGIC).unwrap_err().to_string(),
            "the handover is cut short"
        );
    }
}
