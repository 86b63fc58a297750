//! The signals the supervisor handles (SIGTERM, SIGINT, SIGHUP), blocked in the threads
//! that are not its loop's.
//!
//! A signal sent to a process goes to any thread that does not block it. The
//! supervisor's handlers note it and wake the loop, so it does not matter which thread
//! takes it, except across an upgrade's exec: the loop blocks the signals in its own
//! thread first, and a signal taken by another thread in that moment would be noted
//! in an image that is about to be replaced, and lost. Blocked in every other thread,
//! it stays pending for the process, and the new image takes it.

/// Blocks (`true`) or unblocks the handled signals in the calling thread.
pub(crate) fn block(block: bool) {
    let how = if block {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: `handled()` is an initialized set, and pthread_sigmask only reads it;
    // changing the calling thread's mask is always sound.
    unsafe { libc::pthread_sigmask(how, &handled(), std::ptr::null_mut()) };
}

/// Runs `f` with the signals blocked in this thread, so that the threads `f` starts
/// are born blocking them; then puts the thread's mask back as it was (a supervisor
/// that an upgrade started keeps them blocked until its handlers are in place).
pub(crate) fn blocked_for<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: both sets are initialized (`before` by sigemptyset, then filled by the
    // first call with the thread's mask), and pthread_sigmask only reads `handled()`
    // and `before` and writes `before`.
    let mut before = unsafe {
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut before);
        libc::pthread_sigmask(libc::SIG_BLOCK, &handled(), &mut before);
        before
    };
    let value = f();
    // SAFETY: as above: `before` is the thread's mask as it was.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, &mut before) };
    value
}

/// SIGTERM, SIGINT and SIGHUP.
fn handled() -> libc::sigset_t {
    // SAFETY: a zeroed `sigset_t` is a valid value to pass to sigemptyset, which
    // initializes it; sigaddset then adds valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}
