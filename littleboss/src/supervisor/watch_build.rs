//! Dev mode's watch on the executable's path: it tells the machine when a new build,
//! complete, has landed there ([`Input::BuildLanded`]). It decides nothing else; what a
//! build does (a reload, or one kept for after the reload under way) is the machine's.
//!
//! It watches the directory, not the file, with the `notify` crate (inotify on Linux,
//! FSEvents on macOS, kqueue on the BSDs), so every way a build lands is seen: a file
//! renamed over the path, cargo's way (the old file removed, the new one hard-linked
//! in), and a file written in place. A file is complete when:
//!
//! - it was renamed in (the writer finished before), or, where the backend reports
//!   close-after-write (inotify), it counts as being written from the moment it
//!   appears (created, or linked in) until it is closed after a write, or until no
//!   process has it open for writing (a file linked in by cargo is never written
//!   through its new name): a file being written is never complete, however long its
//!   writer pauses, and however long its first `write()` takes (inotify reports a write
//!   only once it returns);
//! - where the backend reports no close events, its size, modification time and inode
//!   are the same across one more quiet period;
//! - it is a non-empty regular file with an execute bit, and not the build that runs.
//!
//! Every event restarts a quiet period ([`QUIET`]), so the events of one build (cargo's
//! remove and link, a copy and its chmod) make one build. If a build that was reported
//! cannot be run because it is still open for writing after all (`ETXTBSY`), the
//! machine asks for it to be looked at again ([`BuildWatch::look_again`]): it is
//! reported once its writer is done, never taken as a failed build. A directory that goes away
//! (`cargo clean`) is watched again once it is back. Where no watch can be set up at
//! all, the directory is polled instead.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{Event, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::logger::Level;

use super::machine::Input;

/// How long the directory must be quiet after an event before the file is looked at.
pub(crate) const QUIET: Duration = Duration::from_millis(200);

/// How often a directory that is gone is looked for again, and how often the polling
/// fallback looks.
const RETRY: Duration = Duration::from_millis(500);

/// A file at one moment: which file, how large, written when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Identity {
    pub(crate) fn of(meta: &Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// The file at the path as a quiet period ends: who it is, and whether it can be run
/// (a regular file with an execute bit that is a complete executable: a builder that
/// writes in place in parts closes the file between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    identity: Identity,
    runnable: bool,
}

impl Found {
    fn at(path: &Path) -> Option<Found> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Found {
            identity: Identity::of(&meta),
            runnable: meta.is_file()
                && meta.mode() & 0o111 != 0
                && meta.len() > 0
                && super::complete_exe::file_is_complete(path),
        })
    }
}

/// What to do when a quiet period ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Nothing, until the next event.
    Wait,
    /// Look again after one more quiet period (the file must be seen stable).
    Again,
    /// A new build is complete.
    Landed,
}

/// Whether the file at the path is a new, complete build, from the events at it.
#[derive(Debug)]
struct Tracker {
    /// The backend reports close-after-write, so a file written in place is complete
    /// when it is closed, not merely when it is quiet.
    close_events: bool,
    /// Something happened at the path since it was last looked at.
    dirty: bool,
    /// The file may be open for writing: it appeared (created or linked in) or was
    /// written to, and no close-after-write has been seen since.
    writing: bool,
    /// Data was written through the path since it appeared: it was surely opened for
    /// writing (used where no one can tell whether it still is).
    written: bool,
    /// Without close events: the file as the last quiet period found it.
    seen: Option<Identity>,
    /// The build that runs, or was reported last.
    current: Option<Identity>,
    /// The build before the one reported last, for [`look_again`](Self::look_again).
    before: Option<Identity>,
}

impl Tracker {
    fn new(close_events: bool, current: Option<Identity>) -> Tracker {
        Tracker {
            close_events,
            // A build that landed before the watch began is seen at the first look.
            dirty: true,
            writing: false,
            written: false,
            seen: None,
            current,
            before: current,
        }
    }

    /// An event at the path; `false` if it is one to ignore (a read: an exec, a copy
    /// made from the file), else the quiet period starts again.
    fn event(&mut self, kind: &EventKind) -> bool {
        match kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => self.writing = false,
            EventKind::Access(_) => return false,
            EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
                self.writing = self.close_events;
                self.written = true;
            }
            // A file that appears at the path is being written from that moment: its
            // first write is reported only once it returns, which may be after many
            // quiet periods. (A file linked in is not, which only a look can tell.)
            EventKind::Create(_) => {
                self.writing = self.close_events;
                self.written = false;
            }
            // Renamed over the path (its writer finished before), or removed.
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                self.writing = false;
                self.written = false;
            }
            _ => {}
        }
        self.dirty = true;
        self.seen = None;
        true
    }

    /// The build reported last could not be run: it is still open for writing. It is
    /// reported again once it is complete.
    fn look_again(&mut self) {
        self.current = self.before;
        self.writing = self.close_events;
        self.dirty = true;
        self.seen = None;
    }

    /// A quiet period ended and `found` is what is at the path; `open_for_writing`
    /// tells whether any process has the file open for writing, where that can be known.
    fn quiet(
        &mut self,
        found: Option<Found>,
        open_for_writing: impl FnOnce() -> Option<bool>,
    ) -> Step {
        if !self.dirty {
            return Step::Wait;
        }
        if self.writing {
            // A file being written is complete at its close, which is an event. One
            // that nobody holds for writing is complete now (linked in, or its close
            // was not seen); where nobody can tell, one that was written waits.
            match open_for_writing() {
                Some(false) => self.writing = false,
                None if !self.written => self.writing = false,
                Some(true) | None => return Step::Wait,
            }
        }
        let Some(found) = found.filter(|f| f.runnable) else {
            // Removed and not replaced yet, empty, or not executable yet: the link, the
            // write or the chmod that follows is an event.
            self.dirty = false;
            return Step::Wait;
        };
        if Some(found.identity) == self.current {
            self.dirty = false;
            return Step::Wait;
        }
        if !self.close_events && self.seen != Some(found.identity) {
            self.seen = Some(found.identity);
            return Step::Again;
        }
        self.dirty = false;
        self.seen = None;
        self.before = self.current;
        self.current = Some(found.identity);
        Step::Landed
    }
}

/// Whether any process has the file at `path` open for writing: `None` where that
/// cannot be known. On Linux, from each process's open files in `/proc` (those this
/// user may read, which include every build this user's tools write); elsewhere it
/// cannot be known.
fn open_for_writing(path: &Path) -> Option<bool> {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return None;
    }
    let target = std::fs::metadata(path).ok()?;
    let procs = std::fs::read_dir("/proc").ok()?;
    for proc in procs.flatten() {
        let pid = proc.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            // The file the fd is open on (the link's target: stat follows it).
            let Ok(meta) = std::fs::metadata(fd.path()) else {
                continue;
            };
            if meta.dev() != target.dev() || meta.ino() != target.ino() {
                continue;
            }
            let info = proc.path().join("fdinfo").join(fd.file_name());
            if let Some(flags) = std::fs::read_to_string(info)
                .ok()
                .and_then(|text| fd_flags(&text))
            {
                if flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
                    return Some(true);
                }
            }
        }
    }
    Some(false)
}

/// The open flags in the text of `/proc/PID/fdinfo/FD` (`flags:\t0100001`, octal).
fn fd_flags(fdinfo: &str) -> Option<u32> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
}

/// Dev mode's watch, as the shell holds it.
#[derive(Debug)]
pub(crate) struct BuildWatch {
    again: mpsc::UnboundedSender<()>,
}

impl BuildWatch {
    /// The build reported last is still open for writing (it could not be run): report
    /// it again once it is complete.
    pub(crate) fn look_again(&self) {
        let _ = self.again.send(());
    }
}

/// Starts watching `path` for new builds in a task of the supervisor's loop; each one
/// is an [`Input::BuildLanded`] on `inputs`. `running` is the executable that runs now.
/// The task ends when the loop does; `None` if no watch could be set up (it says why
/// through `log`).
pub(crate) fn spawn(
    path: PathBuf,
    running: Option<Metadata>,
    inputs: mpsc::UnboundedSender<Input>,
    log: impl Fn(Level, &str) + Send + 'static,
) -> Option<BuildWatch> {
    let Some((dir, name)) = path
        .parent()
        .zip(path.file_name())
        .map(|(dir, name)| (dir.to_path_buf(), name.to_os_string()))
    else {
        log(
            Level::Warn,
            &format!("dev: cannot watch {}: not a file's path", path.display()),
        );
        return None;
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    let handler = move |event: notify::Result<Event>| {
        let _ = events_tx.send(event);
    };
    let (watcher, close_events): (Box<dyn Watcher + Send>, bool) =
        // The watcher's thread never takes the supervisor's signals.
        match crate::signals::blocked_for(|| notify::recommended_watcher(handler.clone())) {
            Ok(watcher) => (
                Box::new(watcher),
                cfg!(any(target_os = "linux", target_os = "android")),
            ),
            Err(e) => {
                log(
                    Level::Warn,
                    &format!(
                        "dev: cannot watch for changes ({e}); looking at {} every {} ms instead",
                        dir.display(),
                        RETRY.as_millis()
                    ),
                );
                let config = notify::Config::default().with_poll_interval(RETRY);
                match notify::PollWatcher::new(handler, config) {
                    Ok(watcher) => (Box::new(watcher), false),
                    Err(e) => {
                        log(
                            Level::Warn,
                            &format!("dev: cannot look for new builds: {e}"),
                        );
                        return None;
                    }
                }
            }
        };
    let (again_tx, again) = mpsc::unbounded_channel();
    let task = Watch {
        tracker: Tracker::new(close_events, running.as_ref().map(Identity::of)),
        path,
        canonical: std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone()),
        dir,
        name,
        watcher,
        events,
        again,
        inputs,
        log: Box::new(log),
        watching: false,
        dir_id: None,
        quiet_until: None,
        retry_at: None,
    };
    tokio::spawn(task.run());
    Some(BuildWatch { again: again_tx })
}

/// Where the watch's own lines go: the supervisor's logger.
type Log = Box<dyn Fn(Level, &str) + Send>;

/// The watch's task.
struct Watch {
    tracker: Tracker,
    path: PathBuf,
    dir: PathBuf,
    /// The directory as the backend may name it (FSEvents resolves symlinks).
    canonical: PathBuf,
    name: OsString,
    watcher: Box<dyn Watcher + Send>,
    events: mpsc::UnboundedReceiver<notify::Result<Event>>,
    /// [`BuildWatch::look_again`].
    again: mpsc::UnboundedReceiver<()>,
    inputs: mpsc::UnboundedSender<Input>,
    log: Log,
    watching: bool,
    /// The directory watched, as (device, inode).
    dir_id: Option<(u64, u64)>,
    quiet_until: Option<Instant>,
    retry_at: Option<Instant>,
}

impl Watch {
    async fn run(mut self) {
        self.watch(true);
        loop {
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(Ok(event)) => self.on_event(&event),
                    Some(Err(e)) => {
                        (self.log)(Level::Warn, &format!("dev: watching {}: {e}", self.dir.display()));
                        self.restart_quiet();
                    }
                    None => return,
                },
                Some(()) = self.again.recv() => {
                    self.tracker.look_again();
                    self.restart_quiet();
                }
                () = sleep_until(self.quiet_until) => {
                    self.quiet_until = None;
                    self.on_quiet();
                }
                () = sleep_until(self.retry_at) => {
                    self.retry_at = None;
                    self.watch(false);
                }
                () = self.inputs.closed() => return,
            }
        }
    }

    /// Watches the directory (again); if it cannot, tries again in a while.
    fn watch(&mut self, first: bool) {
        let _ = self.watcher.unwatch(&self.canonical);
        match self
            .watcher
            .watch(&self.canonical, RecursiveMode::NonRecursive)
        {
            Ok(()) => {
                self.watching = true;
                self.dir_id = dir_id(&self.canonical);
                let again = if first { "" } else { " again" };
                (self.log)(
                    Level::Info,
                    &format!(
                        "dev: watching {}{again} for new builds of {}",
                        self.dir.display(),
                        self.name.to_string_lossy()
                    ),
                );
                // Whatever landed while it was not watched is looked at.
                self.tracker.event(&EventKind::Any);
                self.restart_quiet();
            }
            Err(e) => {
                if self.watching || first {
                    (self.log)(
                        Level::Warn,
                        &format!(
                            "dev: cannot watch {}: {e}; trying again every {} ms",
                            self.dir.display(),
                            RETRY.as_millis()
                        ),
                    );
                }
                self.watching = false;
                self.retry_at = Some(Instant::now() + RETRY);
            }
        }
    }

    fn on_event(&mut self, event: &Event) {
        let is_dir = |p: &PathBuf| *p == self.dir || *p == self.canonical;
        let dir_gone = matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        ) && event.paths.iter().any(is_dir);
        if dir_gone {
            return self.lost();
        }
        let ours = event.paths.iter().any(|p| {
            p.file_name() == Some(self.name.as_os_str())
                && p.parent().and_then(Path::file_name) == self.canonical.file_name()
        });
        // A rescan (the backend lost events) may hide anything.
        let rescan = event.need_rescan() || event.paths.is_empty();
        let kind = if rescan { &EventKind::Any } else { &event.kind };
        if (ours || rescan) && self.tracker.event(kind) {
            self.restart_quiet();
        } else if self.tracker.writing
            && matches!(
                event.kind,
                EventKind::Access(AccessKind::Close(AccessMode::Write))
            )
        {
            // The file may be written through another name (linked in while its
            // writer, under its first name, was not done): that name's close is the
            // moment to look whether anyone still holds it.
            self.restart_quiet();
        }
    }

    /// The directory was removed or moved away (`cargo clean`): it is watched again
    /// once it is back.
    fn lost(&mut self) {
        if !self.watching {
            return;
        }
        (self.log)(
            Level::Info,
            &format!(
                "dev: {} is gone; watching it again once it is back",
                self.dir.display()
            ),
        );
        self.watching = false;
        self.watch(false);
    }

    fn restart_quiet(&mut self) {
        self.quiet_until = Some(Instant::now() + QUIET);
    }

    fn on_quiet(&mut self) {
        // A directory removed while the running build is in it stays busy, and the
        // backend may say nothing of its removal until the build exits: look.
        if self.watching && dir_id(&self.canonical) != self.dir_id {
            return self.lost();
        }
        let path = &self.path;
        match self
            .tracker
            .quiet(Found::at(path), || open_for_writing(path))
        {
            Step::Wait => {}
            Step::Again => self.restart_quiet(),
            Step::Landed => {
                let _ = self.inputs.send(Input::BuildLanded);
            }
        }
    }
}

/// The (device, inode) of the directory at `path`, if there is one.
fn dir_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path)
        .ok()
        .filter(Metadata::is_dir)
        .map(|m| (m.dev(), m.ino()))
}

/// Sleeps until `deadline`, or forever if there is none (for a `select!` branch).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    use super::*;

    fn id(ino: u64, size: u64) -> Identity {
        Identity {
            dev: 1,
            ino,
            size,
            mtime: (0, 0),
        }
    }

    fn found(ino: u64, size: u64) -> Option<Found> {
        Some(Found {
            identity: id(ino, size),
            runnable: true,
        })
    }

    /// No process has the file open for writing.
    fn nobody() -> Option<bool> {
        Some(false)
    }

    /// A process has it open for writing.
    fn held() -> Option<bool> {
        Some(true)
    }

    /// Nobody can tell.
    fn unknown() -> Option<bool> {
        None
    }

    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Any));
    const CLOSE: EventKind = EventKind::Access(AccessKind::Close(AccessMode::Write));

    #[test]
    fn the_build_that_runs_is_not_new() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        assert_eq!(t.quiet(found(1, 10), nobody), Step::Wait);
        assert_eq!(
            t.quiet(found(2, 10), nobody),
            Step::Wait,
            "nothing happened since"
        );
    }

    #[test]
    fn a_build_that_landed_before_the_watch_is_seen_at_once() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        assert_eq!(t.quiet(found(2, 10), nobody), Step::Landed);
    }

    #[test]
    fn cargo_removes_and_links() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        t.quiet(found(1, 10), nobody);
        assert!(t.event(&EventKind::Remove(RemoveKind::File)));
        assert!(t.event(&EventKind::Create(CreateKind::File)));
        assert_eq!(t.quiet(found(2, 12), nobody), Step::Landed);
        assert_eq!(
            t.quiet(found(2, 12), nobody),
            Step::Wait,
            "one build, one reload"
        );
    }

    #[test]
    fn a_rename_over_the_path() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        t.quiet(found(1, 10), nobody);
        t.event(&EventKind::Modify(ModifyKind::Name(RenameMode::To)));
        assert_eq!(t.quiet(found(3, 10), nobody), Step::Landed);
    }

    #[test]
    fn a_file_written_in_place_is_complete_at_its_close() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        t.quiet(found(1, 10), nobody);
        t.event(&EventKind::Remove(RemoveKind::File));
        t.event(&EventKind::Create(CreateKind::File));
        t.event(&WRITE);
        // The writer pauses for many quiet periods.
        for _ in 0..5 {
            assert_eq!(t.quiet(found(2, 5), held), Step::Wait);
        }
        t.event(&WRITE);
        t.event(&CLOSE);
        assert_eq!(t.quiet(found(2, 10), nobody), Step::Landed);
    }

    /// The first write of a large build may take longer than a quiet period, and inotify
    /// reports it only once it returns: from its creation, the file is being written
    /// while its writer holds it.
    #[test]
    fn a_created_file_is_being_written_until_nobody_holds_it() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        t.quiet(found(1, 10), nobody);
        t.event(&EventKind::Remove(RemoveKind::File));
        t.event(&EventKind::Create(CreateKind::File));
        for _ in 0..5 {
            assert_eq!(t.quiet(found(2, 5), held), Step::Wait, "half written");
        }
        t.event(&WRITE);
        t.event(&CLOSE);
        assert_eq!(
            t.quiet(found(2, 10), held),
            Step::Landed,
            "closed after its write"
        );
    }

    /// cargo links the build in: created, never written through the path, held by
    /// nobody.
    #[test]
    fn a_file_linked_in_is_complete_once_nobody_holds_it() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        t.quiet(found(1, 10), nobody);
        t.event(&EventKind::Remove(RemoveKind::File));
        t.event(&EventKind::Create(CreateKind::File));
        assert_eq!(t.quiet(found(2, 10), nobody), Step::Landed);
        // Where nobody can tell, a file linked in is complete; one written is not
        // until its close.
        t.event(&EventKind::Create(CreateKind::File));
        assert_eq!(t.quiet(found(3, 10), unknown), Step::Landed);
        t.event(&EventKind::Create(CreateKind::File));
        t.event(&WRITE);
        assert_eq!(t.quiet(found(4, 10), unknown), Step::Wait);
    }

    /// A build reported, then found busy when run (`ETXTBSY`), is reported again once
    /// it is complete, even unchanged.
    #[test]
    fn a_build_found_busy_is_reported_again_once_complete() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        t.quiet(found(1, 10), nobody);
        t.event(&EventKind::Create(CreateKind::File));
        assert_eq!(t.quiet(found(2, 10), nobody), Step::Landed);
        t.look_again();
        assert_eq!(t.quiet(found(2, 10), held), Step::Wait, "still held");
        t.event(&CLOSE);
        assert_eq!(
            t.quiet(found(2, 10), nobody),
            Step::Landed,
            "the same file, now complete"
        );
        assert_eq!(t.quiet(found(2, 10), nobody), Step::Wait, "once");
    }

    #[test]
    fn the_flags_of_an_open_file_are_read() {
        let text = "pos:\t0\nflags:\t0100001\nmnt_id:\t20\n";
        assert_eq!(fd_flags(text), Some(0o100001));
        assert_eq!(fd_flags("pos:\t0\n"), None);
    }

    /// The look at `/proc`, on this very process's files.
    #[test]
    fn who_holds_a_file_for_writing_is_seen() {
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app");
        let file = std::fs::File::create(&path).expect("create");
        assert_eq!(open_for_writing(&path), Some(true));
        drop(file);
        let read = std::fs::File::open(&path).expect("open to read");
        assert_eq!(
            open_for_writing(&path),
            Some(false),
            "a reader is not a writer"
        );
        drop(read);
        assert_eq!(open_for_writing(&dir.path().join("missing")), None);
    }

    #[test]
    fn reads_and_execs_are_ignored() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        t.quiet(found(1, 10), nobody);
        assert!(!t.event(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!t.event(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert_eq!(t.quiet(found(1, 10), nobody), Step::Wait);
    }

    #[test]
    fn a_removed_empty_or_plain_file_waits_for_the_next_event() {
        let mut t = Tracker::new(true, Some(id(1, 10)));
        t.quiet(found(1, 10), nobody);
        t.event(&EventKind::Remove(RemoveKind::File));
        assert_eq!(t.quiet(None, nobody), Step::Wait);
        t.event(&EventKind::Create(CreateKind::File));
        let plain = Found {
            identity: id(2, 10),
            runnable: false,
        };
        assert_eq!(t.quiet(Some(plain), nobody), Step::Wait);
        t.event(&EventKind::Modify(ModifyKind::Metadata(
            notify::event::MetadataKind::Permissions,
        )));
        assert_eq!(t.quiet(found(2, 10), nobody), Step::Landed);
    }

    #[test]
    fn without_close_events_a_file_must_be_stable() {
        let mut t = Tracker::new(false, Some(id(1, 10)));
        t.quiet(found(1, 10), nobody);
        t.event(&WRITE);
        assert_eq!(t.quiet(found(2, 5), nobody), Step::Again);
        assert_eq!(t.quiet(found(2, 8), nobody), Step::Again, "it grew");
        assert_eq!(t.quiet(found(2, 8), nobody), Step::Landed);
        t.event(&EventKind::Modify(ModifyKind::Name(RenameMode::To)));
        assert_eq!(t.quiet(found(3, 8), nobody), Step::Again);
        t.event(&WRITE);
        assert_eq!(
            t.quiet(found(3, 9), nobody),
            Step::Again,
            "an event restarts the look"
        );
        assert_eq!(t.quiet(found(3, 9), nobody), Step::Landed);
    }

    async fn landed(rx: &mut mpsc::UnboundedReceiver<Input>) -> bool {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .is_ok_and(|i| matches!(i, Some(Input::BuildLanded)))
    }

    async fn nothing(rx: &mut mpsc::UnboundedReceiver<Input>) -> bool {
        tokio::time::timeout(QUIET * 4, rx.recv()).await.is_err()
    }

    /// The watch on a real directory, with the platform's backend: each way a build
    /// lands is one [`Input::BuildLanded`], and a half-written file is none.
    #[test]
    fn real_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app");
        let write = |path: &Path, bytes: &[u8]| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o755)
                .open(path)
                .expect("create");
            file.write_all(bytes).expect("write");
        };
        write(&path, b"#!/bin/sh\n# build 1\n");
        let running = std::fs::metadata(&path).ok();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel();
            spawn(path.clone(), running, tx, |_, _| {});
            assert!(nothing(&mut rx).await, "the build that runs is not new");

            // Renamed over the path.
            write(&dir.path().join(".app.tmp"), b"#!/bin/sh\n# build 2\n");
            std::fs::rename(dir.path().join(".app.tmp"), &path).expect("rename");
            assert!(landed(&mut rx).await, "a rename");
            assert!(nothing(&mut rx).await, "one rename, one build");

            // Removed, and a hard link put in its place (cargo).
            write(&dir.path().join("app-0123"), b"#!/bin/sh\n# build 3\n");
            std::fs::remove_file(&path).expect("remove");
            std::fs::hard_link(dir.path().join("app-0123"), &path).expect("link");
            assert!(landed(&mut rx).await, "a remove and a link");
            assert!(nothing(&mut rx).await, "one link, one build");

            // Written in place by a writer that pauses longer than the quiet period:
            // complete at its close (inotify; elsewhere a pause looks complete).
            if !cfg!(any(target_os = "linux", target_os = "android")) {
                return;
            }
            std::fs::remove_file(&path).expect("remove");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o755)
                .open(&path)
                .expect("create");
            file.write_all(b"#!/bin/sh\n# build").expect("write");
            file.flush().expect("flush");
            assert!(nothing(&mut rx).await, "half written");
            assert!(nothing(&mut rx).await, "still half written");
            file.write_all(b" 4\n").expect("write");
            drop(file);
            assert!(landed(&mut rx).await, "closed after the write");
            assert!(nothing(&mut rx).await, "one write, one build");
        });
    }
}
