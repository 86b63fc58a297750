//! The supervisor <-> child channel: one `SOCK_SEQPACKET` socket pair, one message a
//! packet, listener fds passed with `SCM_RIGHTS`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// The largest message either side sends or accepts.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;

/// The most fds one message carries (the kernel's limit is 253).
pub(crate) const MAX_FDS: usize = 128;

/// The environment variable that gives the child its end of the channel.
pub(crate) const CHANNEL_ENV: &str = "LITTLEBOSS_CHANNEL_FD";

/// The environment variable that names the supervisor whose child the channel is for:
/// a process whose parent is another one (a program the child started) ignores the
/// channel variable it inherited.
pub(crate) const SUPERVISOR_PID_ENV: &str = "LITTLEBOSS_SUPERVISOR_PID";

/// A new channel: (supervisor's end, child's end), both close-on-exec.
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends one message, with `fds` attached.
pub(crate) fn send(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} fds in one message; at most {MAX_FDS}", fds.len()),
        ));
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("fds do not fit the control buffer"));
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if sent != bytes.len() {
        return Err(io::Error::other("message sent in part"));
    }
    Ok(())
}

/// One received message: its bytes and the fds it carried (close-on-exec).
#[derive(Debug)]
pub(crate) struct Received {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// Receives one message; `Ok(None)` at end of stream (the other side is gone).
///
/// A message or fd list cut short by the kernel is an error, and every fd that did
/// arrive is closed on every error path (they are `OwnedFd`s from the start).
pub(crate) fn recv(socket: BorrowedFd<'_>, flags: RecvFlags) -> io::Result<Option<Received>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        flags | RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message carried more fds than allowed",
        ));
    }
    if msg.flags.contains(ReturnFlags::TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message longer than {MAX_MESSAGE} bytes"),
        ));
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    buf.truncate(msg.bytes);
    Ok(Some(Received { bytes: buf, fds }))
}

/// The supervisor's end, driven by tokio.
#[derive(Debug)]
pub(crate) struct AsyncChannel {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl AsyncChannel {
    /// Wraps the supervisor's end (made non-blocking here).
    pub(crate) fn new(fd: OwnedFd) -> io::Result<AsyncChannel> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        // SAFETY: an `OwnedFd` is open for as long as it lives and always returns the
        // same fd number, and the `AsyncFd` owns it until it is dropped.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }?;
        Ok(AsyncChannel { fd })
    }

    /// Sends one message with `fds` attached.
    pub(crate) async fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| send(fd.get_ref().as_fd(), bytes, fds)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// The fd back, for a supervisor that re-executes itself (it stays non-blocking).
    pub(crate) fn into_inner(self) -> OwnedFd {
        self.fd.into_inner()
    }

    /// Receives one message if one is waiting, without waiting for one.
    pub(crate) fn try_recv(&self) -> io::Result<Option<Received>> {
        recv(self.fd.get_ref().as_fd(), RecvFlags::DONTWAIT)
    }

    /// Receives one message; `Ok(None)` when the child's end is closed.
    pub(crate) async fn recv(&self) -> io::Result<Option<Received>> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv(fd.get_ref().as_fd(), RecvFlags::DONTWAIT)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn passes_fds_and_closes_on_eof() {
        let (a, b) = pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send(a.as_fd(), b"hello", &[file.as_fd()]).unwrap();
        let got = recv(b.as_fd(), RecvFlags::empty()).unwrap().unwrap();
        assert_eq!(got.bytes, b"hello");
        assert_eq!(got.fds.len(), 1);
        assert_ne!(got.fds[0].as_raw_fd(), file.as_raw_fd());
        let flags = rustix::io::fcntl_getfd(&got.fds[0]).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        drop(a);
        assert!(recv(b.as_fd(), RecvFlags::empty()).unwrap().is_none());
    }

    #[test]
    fn refuses_oversized_messages() {
        let (a, b) = pair().unwrap();
        send(a.as_fd(), &vec![7u8; MAX_MESSAGE + 1], &[]).unwrap();
        let err = recv(b.as_fd(), RecvFlags::empty()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
