//! The supervisor <-> child channel: a unix socket pair, one message at a time,
//! listener fds passed with `SCM_RIGHTS`.
//!
//! Where the system has `SOCK_SEQPACKET` (Linux, FreeBSD) the pair is of that type and
//! the kernel keeps each message one packet. Elsewhere (macOS), and on Linux under
//! `LITTLEBOSS_PORTABLE=1`, it is a `SOCK_STREAM` pair and each message is framed: a
//! 4-byte big-endian length, then that many bytes, with the message's fds sent in the
//! same `sendmsg` as its first byte. A receiver never reads past the end of the message
//! it is reading, so fds always arrive with the message they belong to. Either side
//! learns the kind from the socket itself (`SO_TYPE`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SocketType,
};

use crate::sys;

/// The largest message either side sends or accepts.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;

/// The most fds one message carries (the kernel's limit is 253).
pub(crate) const MAX_FDS: usize = 128;

/// The most bytes of items that a message carrying a list of them (connections handed
/// over, their ids) holds: a whole message, less room for the rest of it. Longer lists
/// go in several messages.
pub(crate) const BATCH_BYTES: usize = MAX_MESSAGE - 4096;

/// How a channel keeps its messages apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `SOCK_SEQPACKET`: one message a packet.
    Packet,
    /// `SOCK_STREAM`: length-prefixed messages.
    Stream,
}

impl Framing {
    /// The kind this system uses for new channels.
    pub(crate) fn for_new() -> Framing {
        if sys::seqpacket() {
            Framing::Packet
        } else {
            Framing::Stream
        }
    }

    /// The kind of socket `socket` is; an error if it is neither.
    pub(crate) fn of(socket: BorrowedFd<'_>) -> io::Result<Framing> {
        Framing::from_type(rustix::net::sockopt::socket_type(socket)?).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a channel is a seqpacket or stream socket",
            )
        })
    }

    /// The kind of channel a socket of type `kind` is, if it can be one.
    pub(crate) fn from_type(kind: SocketType) -> Option<Framing> {
        match kind {
            SocketType::SEQPACKET => Some(Framing::Packet),
            SocketType::STREAM => Some(Framing::Stream),
            _ => None,
        }
    }

    fn socket_type(self) -> SocketType {
        match self {
            Framing::Packet => SocketType::SEQPACKET,
            Framing::Stream => SocketType::STREAM,
        }
    }
}

/// A new channel of the kind this system uses: (supervisor's end, child's end), both
/// close-on-exec.
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    pair_of(Framing::for_new())
}

/// A new channel of `kind`.
pub(crate) fn pair_of(kind: Framing) -> io::Result<(OwnedFd, OwnedFd)> {
    sys::socketpair(kind.socket_type())
}

/// Sends one message, with `fds` attached (blocking until it is all sent).
pub(crate) fn send(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    check_fds(fds)?;
    match Framing::of(socket)? {
        Framing::Packet => send_packet(socket, bytes, fds),
        Framing::Stream => {
            let frame = frame(bytes)?;
            let mut sent = 0;
            loop {
                match send_frame(socket, &frame, fds, &mut sent) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    result => return result,
                }
            }
        }
    }
}

fn check_fds(fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} fds in one message; at most {MAX_FDS}", fds.len()),
        ));
    }
    Ok(())
}

/// `sendmsg` of `bytes` with `fds` attached; the number of bytes sent.
fn sendmsg(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("fds do not fit the control buffer"));
    }
    Ok(rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        sys::SEND_NOSIGNAL,
    )?)
}

fn send_packet(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if sendmsg(socket, bytes, fds)? != bytes.len() {
        return Err(io::Error::other("message sent in part"));
    }
    Ok(())
}

/// The length prefix and `bytes`: one message of a stream channel.
fn frame(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&len| len as usize <= MAX_MESSAGE)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a message of {} bytes; at most {MAX_MESSAGE}", bytes.len()),
            )
        })?;
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(bytes);
    Ok(frame)
}

/// Sends what is left of `frame` from `*sent` on, the fds with its first byte; returns
/// once all of it is sent, or with the error (`WouldBlock` on a non-blocking socket),
/// `*sent` telling where to go on from.
fn send_frame(
    socket: BorrowedFd<'_>,
    frame: &[u8],
    fds: &[BorrowedFd<'_>],
    sent: &mut usize,
) -> io::Result<()> {
    while *sent < frame.len() {
        let fds = if *sent == 0 { fds } else { &[] };
        *sent += sendmsg(socket, &frame[*sent..], fds)?;
    }
    Ok(())
}

/// One received message: its bytes and the fds it carried (close-on-exec).
#[derive(Debug)]
pub(crate) struct Received {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    /// Fewer fds arrived than were sent (`MSG_CTRUNC`): the receiver ran out of fds,
    /// or the sender sent more than [`MAX_FDS`]. `fds` holds those that came, in
    /// order; what to do about the others is the receiver's to decide, and the
    /// channel goes on.
    pub cut: bool,
}

/// What a stream channel has received of a message that is not complete yet.
#[derive(Debug, Default)]
pub(crate) struct Partial {
    /// The length prefix and the bytes after it, as far as they came.
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
    cut: bool,
}

/// Receives one message; `Ok(None)` at end of stream (the other side is gone).
///
/// A message cut short by the kernel is an error, and every fd that did arrive is
/// closed on every error path (they are `OwnedFd`s from the start). An fd list cut
/// short is not an error: [`Received::cut`] says so.
pub(crate) fn recv(socket: BorrowedFd<'_>, flags: RecvFlags) -> io::Result<Option<Received>> {
    recv_with(socket, Framing::of(socket)?, flags, &mut Partial::default())
}

/// Receives one message from a channel of `kind`, going on from `partial` (for a
/// stream channel on a non-blocking socket, where a message may arrive in parts: on
/// `WouldBlock` what came so far stays in `partial`).
fn recv_with(
    socket: BorrowedFd<'_>,
    kind: Framing,
    flags: RecvFlags,
    partial: &mut Partial,
) -> io::Result<Option<Received>> {
    match kind {
        Framing::Packet => recv_packet(socket, flags),
        Framing::Stream => recv_frame(socket, flags, partial),
    }
}

/// `recvmsg` into `buf`: the bytes received, the flags, and the fds that came
/// (close-on-exec before anything else can start a child).
pub(crate) fn recvmsg(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: RecvFlags,
) -> io::Result<(usize, ReturnFlags, Vec<OwnedFd>)> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let new = sys::NewFds::begin();
    let msg = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        flags | new.recv_flags(),
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    for fd in &fds {
        new.mark(fd.as_fd())?;
    }
    Ok((msg.bytes, msg.flags, fds))
}

thread_local! {
    /// Where each thread receives packets: one buffer of [`MAX_MESSAGE`] bytes, kept,
    /// rather than one zeroed for every message (with many messages a second, the
    /// allocator gave its pages back and took them again each time).
    static PACKET: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn recv_packet(socket: BorrowedFd<'_>, flags: RecvFlags) -> io::Result<Option<Received>> {
    let (buf, returned, fds) = PACKET.with_borrow_mut(|packet| {
        packet.resize(MAX_MESSAGE, 0);
        let (len, returned, fds) = recvmsg(socket, packet, flags)?;
        let bytes = packet[..len].to_vec();
        // What it held (a TLS session's keys, say) is not left behind for the next.
        zeroize::Zeroize::zeroize(&mut packet[..len]);
        io::Result::Ok((bytes, returned, fds))
    })?;
    let len = buf.len();
    if returned.contains(ReturnFlags::TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message longer than {MAX_MESSAGE} bytes"),
        ));
    }
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    let cut = returned.contains(ReturnFlags::CTRUNC);
    Ok(Some(Received {
        bytes: buf,
        fds,
        cut,
    }))
}

fn recv_frame(
    socket: BorrowedFd<'_>,
    flags: RecvFlags,
    partial: &mut Partial,
) -> io::Result<Option<Received>> {
    loop {
        let have = partial.bytes.len();
        let want = match partial.bytes.get(..4) {
            None => 4 - have,
            Some(prefix) => {
                let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_MESSAGE {
                    *partial = Partial::default();
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("message longer than {MAX_MESSAGE} bytes"),
                    ));
                }
                4 + len - have
            }
        };
        if want == 0 && have >= 4 {
            let done = std::mem::take(partial);
            let mut bytes = done.bytes;
            bytes.drain(..4);
            return Ok(Some(Received {
                bytes,
                fds: done.fds,
                cut: done.cut,
            }));
        }
        let mut buf = vec![0u8; want];
        let (len, returned, fds) = match recvmsg(socket, &mut buf, flags) {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            Err(e) => {
                *partial = Partial::default();
                return Err(e);
            }
        };
        partial.fds.extend(fds);
        partial.cut |= returned.contains(ReturnFlags::CTRUNC);
        if len == 0 {
            if partial.bytes.is_empty() && partial.fds.is_empty() {
                return Ok(None);
            }
            *partial = Partial::default();
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the channel closed in the middle of a message",
            ));
        }
        partial.bytes.extend_from_slice(&buf[..len]);
    }
}

/// The supervisor's end, driven by tokio.
#[derive(Debug)]
pub(crate) struct AsyncChannel {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
    kind: Framing,
    /// A message that has come in part (stream channels only).
    partial: Mutex<Partial>,
}

impl AsyncChannel {
    /// Wraps the supervisor's end (made non-blocking here).
    pub(crate) fn new(fd: OwnedFd) -> io::Result<AsyncChannel> {
        let kind = Framing::of(fd.as_fd())?;
        rustix::io::ioctl_fionbio(&fd, true)?;
        // SAFETY: an `OwnedFd` is open for as long as it lives and always returns the
        // same fd number, and the `AsyncFd` owns it until it is dropped.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }?;
        Ok(AsyncChannel {
            fd,
            kind,
            partial: Mutex::new(Partial::default()),
        })
    }

    /// Sends one message with `fds` attached.
    pub(crate) async fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        check_fds(fds)?;
        let framed = match self.kind {
            Framing::Packet => None,
            Framing::Stream => Some(frame(bytes)?),
        };
        let mut sent = 0;
        loop {
            let mut guard = self.fd.writable().await?;
            let attempt = guard.try_io(|fd| {
                let fd = fd.get_ref().as_fd();
                match &framed {
                    None => send_packet(fd, bytes, fds),
                    Some(framed) => send_frame(fd, framed, fds, &mut sent),
                }
            });
            match attempt {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
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
        self.recv_now()
    }

    /// Receives one message; `Ok(None)` when the child's end is closed.
    pub(crate) async fn recv(&self) -> io::Result<Option<Received>> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|_| self.recv_now()) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    fn recv_now(&self) -> io::Result<Option<Received>> {
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        recv_with(
            self.fd.get_ref().as_fd(),
            self.kind,
            RecvFlags::DONTWAIT,
            &mut partial,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    const KINDS: [Framing; 2] = [Framing::Packet, Framing::Stream];

    #[test]
    fn passes_fds_and_closes_on_eof() {
        for kind in KINDS {
            let (a, b) = pair_of(kind).unwrap();
            assert_eq!(Framing::of(a.as_fd()).unwrap(), kind);
            let file = tempfile::tempfile().unwrap();
            send(a.as_fd(), b"hello", &[file.as_fd()]).unwrap();
            send(a.as_fd(), b"again", &[]).unwrap();
            let got = recv(b.as_fd(), RecvFlags::empty()).unwrap().unwrap();
            assert_eq!(got.bytes, b"hello");
            assert_eq!(got.fds.len(), 1);
            assert_ne!(got.fds[0].as_raw_fd(), file.as_raw_fd());
            let flags = rustix::io::fcntl_getfd(&got.fds[0]).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
            let got = recv(b.as_fd(), RecvFlags::empty()).unwrap().unwrap();
            assert_eq!((got.bytes.as_slice(), got.fds.len()), (&b"again"[..], 0));
            drop(a);
            assert!(recv(b.as_fd(), RecvFlags::empty()).unwrap().is_none());
        }
    }

    #[test]
    fn refuses_oversized_messages() {
        let (a, b) = pair_of(Framing::Packet).unwrap();
        send(a.as_fd(), &vec![7u8; MAX_MESSAGE + 1], &[]).unwrap();
        let err = recv(b.as_fd(), RecvFlags::empty()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A stream channel's sender refuses it, and its receiver refuses the prefix.
        let (a, b) = pair_of(Framing::Stream).unwrap();
        let err = send(a.as_fd(), &vec![7u8; MAX_MESSAGE + 1], &[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let prefix = u32::try_from(MAX_MESSAGE + 1).unwrap().to_be_bytes();
        rustix::net::send(&a, &prefix, rustix::net::SendFlags::empty()).unwrap();
        let err = recv(b.as_fd(), RecvFlags::empty()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_stream_closed_in_the_middle_of_a_message_is_an_error() {
        let (a, b) = pair_of(Framing::Stream).unwrap();
        rustix::net::send(&a, &[0, 0, 0, 9, 1, 2], rustix::net::SendFlags::empty()).unwrap();
        drop(a);
        let err = recv(b.as_fd(), RecvFlags::empty()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// A message larger than the socket's buffer goes out in parts and comes in whole,
    /// with its fds, on the supervisor's non-blocking end.
    #[tokio::test]
    async fn a_stream_message_in_parts_is_read_whole() {
        let (a, b) = pair_of(Framing::Stream).unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
        let big: Vec<u8> = (0..MAX_MESSAGE).map(|i| (i % 251) as u8).collect();
        let sender = AsyncChannel::new(a).unwrap();
        let receiver = AsyncChannel::new(b).unwrap();
        let file = tempfile::tempfile().unwrap();
        let (sent, received) = tokio::join!(
            async {
                sender.send(&big, &[file.as_fd()]).await.unwrap();
                sender.send(b"next", &[]).await.unwrap();
            },
            async {
                let first = receiver.recv().await.unwrap().unwrap();
                let second = receiver.recv().await.unwrap().unwrap();
                (first, second)
            }
        );
        let () = sent;
        let (first, second) = received;
        assert_eq!(first.bytes, big);
        assert_eq!(first.fds.len(), 1);
        assert_eq!(second.bytes, b"next");
        assert!(second.fds.is_empty());
    }
}
