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
    // SAFETY: `set` is a local signal set, initialized by sigemptyset before use, and
    // pthread_sigmask only reads it; changing the calling thread's mask is always sound.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Runs `f` with the signals blocked in this thread, so that the threads `f` starts
/// are born blocking them; then unblocks them again.
pub(crate) fn blocked_for<T>(f: impl FnOnce() -> T) -> T {
    block(true);
    let value = f();
    block(false);
    value
}
