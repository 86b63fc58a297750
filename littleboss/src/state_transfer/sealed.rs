//! The file that carries a state's bytes from one process to the next, so that they
//! never pass through the supervisor's memory: only its fd does.
//!
//! On Linux and FreeBSD it is a memfd, written with `write` (no writable mapping ever
//! exists) and sealed with `F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`
//! before it is sent. The receiver checks the seals and the size before it maps the
//! file read-only: sealed so, the file can change no more, nor shrink under the mapping
//! (which would fault on a read past its new end), so the mapping is an ordinary
//! `&[u8]` with no copy. On macOS, which has no memfds, it is an unlinked file of mode
//! 0600 in `$TMPDIR` (a child may run as another user than the supervisor, and cannot
//! write in its directory); nothing can seal it, so the receiver checks its size and
//! reads it into memory instead of mapping it. Linux takes that path too under
//! `LITTLEBOSS_PORTABLE=1` ([`sys::sealed_memfds`]), so that it is tested there.
//!
//! An empty state has no file at all. The memfd calls, which macOS lacks, are in the
//! shims at the end.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FileType, Mode, OFlags};

use crate::control::protocol::MAX_STATE_BYTES;
use crate::sys;

/// The name a state's memfd has (in `/proc/PID/fd` and `/proc/PID/maps`).
pub(crate) const MEMFD_NAME: &str = "littleboss-state";

/// Which file carries a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A sealed memfd, mapped by the receiver.
    Memfd,
    /// An unlinked file, read by the receiver.
    Unlinked,
}

impl Kind {
    /// The kind this system uses ([`sys::sealed_memfds`]).
    pub(crate) fn here() -> Kind {
        if sys::sealed_memfds() {
            Kind::Memfd
        } else {
            Kind::Unlinked
        }
    }
}

/// A state's file being written: a memfd, or an unlinked file where there are none.
/// It counts what it is given, and past [`MAX_STATE_BYTES`] it writes nothing more but
/// goes on counting, so that an error can say how large the state was.
#[derive(Debug)]
pub(crate) struct Writer {
    file: File,
    kind: Kind,
    written: u64,
    /// The bytes given past the limit are counted, not written.
    over: bool,
}

impl Writer {
    /// A new, empty file for a state, of the kind this system uses.
    pub(crate) fn new() -> io::Result<Writer> {
        Writer::of_kind(Kind::here())
    }

    /// A new, empty file of `kind`.
    pub(crate) fn of_kind(kind: Kind) -> io::Result<Writer> {
        let fd = match kind {
            Kind::Memfd => shims::memfd(MEMFD_NAME)?,
            Kind::Unlinked => unlinked_file()?,
        };
        Ok(Writer {
            file: File::from(fd),
            kind,
            written: 0,
            over: false,
        })
    }

    /// A sealed file holding `bytes`, whole, of the kind this system uses.
    pub(crate) fn holding(bytes: &[u8]) -> io::Result<(OwnedFd, u64)> {
        Writer::holding_as(bytes, Kind::here())
    }

    /// A file of `kind` holding `bytes`, whole, sealed if it is a memfd.
    pub(crate) fn holding_as(bytes: &[u8], kind: Kind) -> io::Result<(OwnedFd, u64)> {
        let mut writer = Writer::of_kind(kind)?;
        // Its size first: the file never grows in steps on the way.
        writer.file.set_len(bytes.len() as u64)?;
        writer.write_all(bytes)?;
        writer.finish()
    }

    /// How many bytes were given, if that is more than a state may hold.
    pub(crate) fn over_limit(&self) -> Option<u64> {
        self.over.then_some(self.written)
    }

    /// The file, sealed where it can be, and its size. Past the limit it is an error
    /// (see [`over_limit`](Self::over_limit)).
    pub(crate) fn finish(self) -> io::Result<(OwnedFd, u64)> {
        if self.over {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} bytes; at most {MAX_STATE_BYTES}", self.written),
            ));
        }
        // Exactly what was written, whatever the size was set to before.
        self.file.set_len(self.written)?;
        if self.kind == Kind::Memfd {
            shims::seal(self.file.as_fd())?;
        }
        Ok((OwnedFd::from(self.file), self.written))
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let after = self.written.saturating_add(buf.len() as u64);
        if self.over || after > MAX_STATE_BYTES {
            self.over = true;
            self.written = after;
            return Ok(buf.len());
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Distinguishes the names of the unlinked files one process makes.
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// A new file of mode 0600 in `$TMPDIR` (`/tmp` when it is unset or not absolute),
/// under a name nobody else has (`O_EXCL`), unlinked at once: only its fd names it.
fn unlinked_file() -> io::Result<OwnedFd> {
    let dir = crate::environ::var("TMPDIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC;
    let mut tries = 0;
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = OsString::from(format!(
            ".littleboss-state-{}-{}-{nanos}",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        let path = dir.join(name);
        match rustix::fs::open(&path, flags, Mode::RUSR | Mode::WUSR) {
            Ok(fd) => {
                rustix::fs::unlink(&path).map_err(|e| {
                    io::Error::new(e.kind(), format!("unlinking {}: {e}", path.display()))
                })?;
                return Ok(fd);
            }
            Err(rustix::io::Errno::EXIST) if tries < 16 => tries += 1,
            Err(e) => {
                let e = io::Error::from(e);
                return Err(io::Error::new(
                    e.kind(),
                    format!("creating a file in {}: {e}", dir.display()),
                ));
            }
        }
    }
}

/// What a state's bytes are, received: nothing, a read-only mapping of a sealed memfd,
/// or what was read from a file that cannot be sealed.
#[derive(Debug)]
pub(crate) enum Contents {
    Empty,
    Mapped(Mapping),
    Read(Vec<u8>),
}

impl Contents {
    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Contents::Empty => &[],
            Contents::Mapped(mapping) => mapping.as_slice(),
            Contents::Read(bytes) => bytes,
        }
    }
}

/// Why a state's file that came is not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("the state's fd is {0}, not a file")]
    NotFile(&'static str),
    #[error("the state's file is not a memory file that can be sealed ({0})")]
    NotSealable(#[source] io::Error),
    /// What it is not sealed against: `writing`, `growing`, `shrinking`.
    #[error("the state's file is not sealed against {0}")]
    NotSealed(&'static str),
    #[error("the state's file holds {holds} bytes, the message said {said}")]
    WrongSize { holds: u64, said: u64 },
    /// A system call failed: which, and why.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] io::Error),
}

/// Takes a state's file of `size` bytes, as the message that brought it said: checks
/// it (seals, size) and maps it, or reads it where it cannot be sealed. The fd is
/// closed either way: a mapping outlives it.
pub(crate) fn open(fd: OwnedFd, size: u64) -> Result<Contents, OpenError> {
    open_as(fd, size, Kind::here())
}

/// [`open`], for a file of `kind`.
pub(crate) fn open_as(fd: OwnedFd, size: u64, kind: Kind) -> Result<Contents, OpenError> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| OpenError::Io("fstat", e.into()))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {}
        FileType::Socket => return Err(OpenError::NotFile("a socket")),
        FileType::Fifo => return Err(OpenError::NotFile("a pipe")),
        FileType::Directory => return Err(OpenError::NotFile("a directory")),
        _ => return Err(OpenError::NotFile("a device or something else")),
    }
    if kind == Kind::Memfd {
        let seals = shims::seals(fd.as_fd()).map_err(OpenError::NotSealable)?;
        for (sealed, against) in [
            (seals.write, "writing"),
            (seals.grow, "growing"),
            (seals.shrink, "shrinking"),
        ] {
            if !sealed {
                return Err(OpenError::NotSealed(against));
            }
        }
    }
    // The size once sealed, when it cannot change any more.
    let stat = rustix::fs::fstat(&fd).map_err(|e| OpenError::Io("fstat", e.into()))?;
    let holds = u64::try_from(stat.st_size).unwrap_or(0);
    if holds != size {
        return Err(OpenError::WrongSize { holds, said: size });
    }
    let Ok(len) = usize::try_from(size) else {
        return Err(OpenError::WrongSize { holds, said: size });
    };
    if len == 0 {
        return Ok(Contents::Empty);
    }
    if kind == Kind::Memfd {
        return Mapping::of(fd.as_fd(), len).map(Contents::Mapped);
    }
    let mut bytes = vec![0u8; len];
    File::from(fd)
        .read_exact_at(&mut bytes, 0)
        .map_err(|e| OpenError::Io("reading the state's file", e))?;
    Ok(Contents::Read(bytes))
}

/// A read-only, shared mapping of a sealed memfd, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only (`PROT_READ`) and of a memfd sealed against writing,
// growing and shrinking (checked by `open` before it maps), so the memory cannot change
// while it is mapped: any thread may read it. Only the owner unmaps it, on drop, when
// no borrow of it is left.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: shared reads of memory that nothing writes.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes (not zero) of `fd`, which `open` has checked is sealed against
    /// writing, growing and shrinking and holds exactly `len` bytes.
    fn of(fd: BorrowedFd<'_>, len: usize) -> Result<Mapping, OpenError> {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a new mapping at an address the kernel chooses (null), of `len`
        // bytes of an fd that is open for the duration of the call; it replaces no
        // memory of ours. What it maps is sealed against writes and size changes
        // (checked by our only caller, `open`), so reading it never sees it change nor
        // faults past its end.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| OpenError::Io("mapping the state's file", e.into()))?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| {
            OpenError::Io(
                "mapping the state's file",
                io::Error::other("a null mapping"),
            )
        })?;
        Ok(Mapping { ptr, len })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is the start of a live mapping of `len` readable bytes (it is
        // unmapped only when `self` is dropped, which this borrow prevents), and the
        // file under it is sealed: nothing writes those bytes while they are borrowed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly the mapping made in `of`, mapped once and
        // unmapped here once; no slice of it outlives `self` (`as_slice` borrows it).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Which seals a file has, where seals exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seals {
    pub write: bool,
    pub grow: bool,
    pub shrink: bool,
}

/// The memfd calls, on the systems that have them.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub(crate) mod shims {
    use std::io;
    use std::os::fd::{BorrowedFd, OwnedFd};

    use rustix::fs::{MemfdFlags, SealFlags};

    use super::Seals;

    /// A new memfd named `name`, close-on-exec, that can be sealed.
    pub(crate) fn memfd(name: &str) -> io::Result<OwnedFd> {
        Ok(rustix::fs::memfd_create(
            name,
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?)
    }

    /// Seals `fd` against writing, growing and shrinking, and against further seals.
    pub(crate) fn seal(fd: BorrowedFd<'_>) -> io::Result<()> {
        let all = SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL;
        Ok(rustix::fs::fcntl_add_seals(fd, all)?)
    }

    /// The seals of `fd`; an error if it cannot have any (not a memfd).
    pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<Seals> {
        let seals = rustix::fs::fcntl_get_seals(fd)?;
        Ok(Seals {
            write: seals.contains(SealFlags::WRITE),
            grow: seals.contains(SealFlags::GROW),
            shrink: seals.contains(SealFlags::SHRINK),
        })
    }

    /// Adds only `seals` to `fd`, for the tests of what is refused.
    #[cfg(test)]
    pub(crate) fn seal_only(fd: BorrowedFd<'_>, seals: Seals) -> io::Result<()> {
        let mut flags = SealFlags::empty();
        for (on, flag) in [
            (seals.write, SealFlags::WRITE),
            (seals.grow, SealFlags::GROW),
            (seals.shrink, SealFlags::SHRINK),
        ] {
            if on {
                flags |= flag;
            }
        }
        Ok(rustix::fs::fcntl_add_seals(fd, flags)?)
    }
}

/// Where there are no memfds (macOS), [`sys::sealed_memfds`] is `false` and these are
/// never called.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub(crate) mod shims {
    use std::io;
    use std::os::fd::{BorrowedFd, OwnedFd};

    use super::Seals;

    fn none() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} has no memfds", crate::sys::SYSTEM),
        )
    }

    pub(crate) fn memfd(_name: &str) -> io::Result<OwnedFd> {
        Err(none())
    }

    pub(crate) fn seal(_fd: BorrowedFd<'_>) -> io::Result<()> {
        Err(none())
    }

    pub(crate) fn seals(_fd: BorrowedFd<'_>) -> io::Result<Seals> {
        Err(none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlinked_file_has_no_name_and_mode_0600() {
        let fd = unlinked_file().unwrap();
        let stat = rustix::fs::fstat(&fd).unwrap();
        assert_eq!(stat.st_nlink, 0, "unlinked");
        assert_eq!(stat.st_mode & 0o777, 0o600);
        assert_eq!(FileType::from_raw_mode(stat.st_mode), FileType::RegularFile);
    }

    #[test]
    fn a_writer_past_the_limit_counts_and_refuses() {
        let mut writer = Writer::new().unwrap();
        writer.write_all(b"abc").unwrap();
        assert_eq!(writer.over_limit(), None);
        // Pretend the file is full: one more byte than the limit is counted.
        writer.written = MAX_STATE_BYTES;
        writer.write_all(b"d").unwrap();
        assert_eq!(writer.over_limit(), Some(MAX_STATE_BYTES + 1));
        let e = writer.finish().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    /// The kinds of file this system can make.
    fn kinds() -> Vec<Kind> {
        if cfg!(any(
            target_os = "linux",
            target_os = "android",
            target_os = "freebsd"
        )) {
            vec![Kind::Memfd, Kind::Unlinked]
        } else {
            vec![Kind::Unlinked]
        }
    }

    #[test]
    fn either_kind_carries_the_bytes_whole() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for kind in kinds() {
            for bytes in [&b"x"[..], &big] {
                let (fd, size) = Writer::holding_as(bytes, kind).unwrap();
                assert_eq!(size, bytes.len() as u64);
                let contents = open_as(fd, size, kind).unwrap();
                assert_eq!(contents.as_slice(), bytes, "{kind:?}");
                // Mapped where it is sealed, read where it cannot be.
                match (kind, &contents) {
                    (Kind::Memfd, Contents::Mapped(_)) | (Kind::Unlinked, Contents::Read(_)) => {}
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    /// A memfd holding `bytes`, with only `seals`.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    fn memfd_sealed(bytes: &[u8], seals: Seals) -> OwnedFd {
        let fd = shims::memfd("littleboss-state-test").unwrap();
        let mut file = File::from(fd);
        file.write_all(bytes).unwrap();
        let fd = OwnedFd::from(file);
        shims::seal_only(fd.as_fd(), seals).unwrap();
        fd
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    fn a_memfd_not_sealed_or_of_another_size_is_refused() {
        let all = Seals {
            write: true,
            grow: true,
            shrink: true,
        };
        let cases = [
            (
                Seals::default(),
                5,
                "the state's file is not sealed against writing",
            ),
            (
                Seals {
                    write: false,
                    ..all
                },
                5,
                "the state's file is not sealed against writing",
            ),
            (
                Seals { grow: false, ..all },
                5,
                "the state's file is not sealed against growing",
            ),
            (
                Seals {
                    shrink: false,
                    ..all
                },
                5,
                "the state's file is not sealed against shrinking",
            ),
            (all, 6, "the state's file holds 5 bytes, the message said 6"),
            (all, 4, "the state's file holds 5 bytes, the message said 4"),
        ];
        for (seals, said, refusal) in cases {
            let fd = memfd_sealed(b"hello", seals);
            let refused = open_as(fd, said, Kind::Memfd).unwrap_err();
            assert_eq!(refused.to_string(), refusal, "{seals:?}");
        }
        let fine = open_as(memfd_sealed(b"hello", all), 5, Kind::Memfd).unwrap();
        assert_eq!(fine.as_slice(), b"hello");
        // A file that cannot be sealed at all, where a memfd is expected.
        let file = OwnedFd::from(tempfile::tempfile().unwrap());
        let refused = open_as(file, 0, Kind::Memfd).unwrap_err().to_string();
        assert!(
            refused.starts_with("the state's file is not a memory file that can be sealed"),
            "{refused}"
        );
    }

    #[test]
    fn an_unlinked_file_of_another_size_is_refused() {
        let (fd, _) = Writer::holding_as(b"hello", Kind::Unlinked).unwrap();
        assert_eq!(
            open_as(fd, 9, Kind::Unlinked).unwrap_err().to_string(),
            "the state's file holds 5 bytes, the message said 9"
        );
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            // Any bytes come out of either kind of file as they went in.
            #[test]
            fn any_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..8192)) {
                for kind in kinds() {
                    let (fd, size) = Writer::holding_as(&bytes, kind).unwrap();
                    let contents = open_as(fd, size, kind).unwrap();
                    prop_assert_eq!(contents.as_slice(), &bytes[..]);
                }
            }
        }
    }

    #[test]
    fn what_is_not_a_file_is_refused() {
        let (read, _write) = rustix::pipe::pipe().unwrap();
        assert_eq!(
            open(read, 0).unwrap_err().to_string(),
            "the state's fd is a pipe, not a file"
        );
    }
}
