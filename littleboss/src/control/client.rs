//! The client side of the control socket: one request, one answer, at the highest
//! protocol version that this binary and the supervisor both speak.

use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};

use super::protocol::{self, Deadline, Request, Response, Versions, Waits};
use crate::error::Error;
use crate::sys;

/// How long a `status` or `stop` is tried again when the supervisor closed the
/// connection without a word: the moment it re-executes itself (an upgrade) closes the
/// connections it has not answered. Both requests can be asked twice.
const RETRY_FOR: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum AskError {
    /// No supervisor listens at the path; the error's text says what was found, its
    /// kind how (`NotFound`, `ConnectionRefused`).
    NotRunning(io::Error),
    /// The supervisor does not speak a version in which the request exists: a
    /// [`Error::Protocol`], or a [`Error::Refused`] for a request its version lacks.
    Version(Error),
    /// No answer came within the deadline.
    Timeout {
        within: Duration,
        waiting: &'static str,
    },
    Io(io::Error),
}

/// Sends one request to the supervisor at `path` and reads its one answer.
///
/// First contact is a `Status` at this binary's oldest version (1, which every
/// supervisor of this release and the one before speaks); its answer says the
/// supervisor's newest version, and the request goes at the highest version both speak.
pub(crate) fn ask(path: &Path, request: &Request) -> Result<Response, AskError> {
    ask_with(path, request, None, &Waits::default(), || {}, |_| {})
}

/// [`ask`], with `exe` (this binary, for a reload or an upgrade) passed as an fd where
/// the supervisor speaks protocol 2 (it runs that very file, whatever its path holds),
/// and a deadline from the times that apply: those the supervisor gives (the running
/// child declared them), this binary's `own` for the new child of a reload.
/// `contacted` runs once a supervisor has answered the first contact, before the
/// request is sent (a command says what it is doing only then).
pub(crate) fn ask_with(
    path: &Path,
    request: &Request,
    exe: Option<BorrowedFd<'_>>,
    own: &Waits,
    contacted: impl FnOnce(),
    mut interim: impl FnMut(&Response),
) -> Result<Response, AskError> {
    let ours = Versions::ours();
    let mut contact = ours.oldest;
    let (answered_at, mut first) = ask_at(
        path,
        contact,
        &Request::Status,
        None,
        Deadline::STATUS,
        &mut |_| {},
    )?;
    // A supervisor that does not speak our oldest refuses it in its own version: if we
    // speak that one too, it is the first contact.
    if answered_at != contact && ours.contains(answered_at) {
        contact = answered_at;
        first = ask_at(
            path,
            contact,
            &Request::Status,
            None,
            Deadline::STATUS,
            &mut |_| {},
        )?
        .1;
    }
    contacted();
    let Response::Status(status) = first else {
        // A refusal (of this client, or a busy supervisor's). A stop goes anyway (a
        // crowded supervisor keeps a slot for it), in the version of the contact.
        if matches!(request, Request::Stop) {
            let deadline = request.deadline(None, own);
            return ask_at(path, contact, request, None, deadline, &mut |_| {}).map(|(_, r)| r);
        }
        return Ok(first);
    };
    // It answered at `contact`, so it speaks that; its newest is in the answer.
    let theirs = Versions {
        oldest: status.protocols[0].min(contact),
        newest: status.protocol,
    };
    let Some(version) = ours.common(theirs) else {
        return Err(AskError::Version(Error::Protocol {
            ours: ours.oldest..=ours.newest,
            theirs: theirs.oldest..=theirs.newest,
        }));
    };
    if request.since() > version {
        return Err(AskError::Version(Error::Refused {
            reason: refusal(request, theirs.newest),
        }));
    }
    if version == contact {
        if matches!(request, Request::Status) {
            return Ok(Response::Status(status));
        }
    } else if matches!(request, Request::Status) {
        return ask_at(path, version, request, None, Deadline::STATUS, &mut |_| {}).map(|(_, r)| r);
    }
    // The times that apply are in a status of protocol 2.
    let times = if contact >= 2 {
        Some(status)
    } else if version >= 2 {
        match ask_at(
            path,
            version,
            &Request::Status,
            None,
            Deadline::STATUS,
            &mut |_| {},
        ) {
            Ok((_, Response::Status(status))) => Some(status),
            _ => None,
        }
    } else {
        None
    };
    let deadline = request.deadline(times.as_deref(), own);
    let exe = exe.filter(|_| version >= 2);
    ask_at(path, version, request, exe, deadline, &mut interim).map(|(_, r)| r)
}

/// Why a supervisor of protocol `theirs` cannot do `request`.
fn refusal(request: &Request, theirs: u16) -> String {
    match request {
        Request::Upgrade(_) => format!(
            "the running supervisor speaks protocol {theirs} and cannot upgrade itself: stop and start it with this binary"
        ),
        Request::Status | Request::Stop | Request::Reload(_) => {
            format!("the running supervisor speaks protocol {theirs}, which lacks this request")
        }
        Request::Promote | Request::Rollback | Request::History | Request::Metrics => {
            let what = match request {
                Request::Promote => "promote",
                Request::Rollback => "rollback",
                Request::History => "history",
                _ => "metrics",
            };
            format!(
                "the running supervisor speaks protocol {theirs}; {what} needs protocol {}: upgrade the supervisor to this release first",
                request.since()
            )
        }
    }
}

/// One request at `version`; a `status` or `stop` whose connection is closed without
/// an answer is asked again, for a few seconds.
fn ask_at(
    path: &Path,
    version: u16,
    request: &Request,
    exe: Option<BorrowedFd<'_>>,
    deadline: Deadline,
    interim: &mut dyn FnMut(&Response),
) -> Result<(u16, Response), AskError> {
    let retry = matches!(request, Request::Status | Request::Stop);
    let started = Instant::now();
    loop {
        match ask_once(path, version, request, exe, deadline, interim) {
            Err(Attempt::Unanswered(_)) if retry && started.elapsed() < RETRY_FOR => {
                std::thread::sleep(RETRY_PAUSE);
            }
            Err(Attempt::Unanswered(e)) => return Err(AskError::Io(e)),
            Err(Attempt::Failed(e)) => return Err(e),
            Ok(response) => return Ok(response),
        }
    }
}

/// How one attempt failed.
enum Attempt {
    /// The supervisor closed the connection before it answered anything.
    Unanswered(io::Error),
    Failed(AskError),
}

fn ask_once(
    path: &Path,
    version: u16,
    request: &Request,
    exe: Option<BorrowedFd<'_>>,
    deadline: Deadline,
    interim: &mut dyn FnMut(&Response),
) -> Result<(u16, Response), Attempt> {
    let failed = |e| Attempt::Failed(AskError::Io(e));
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Attempt::Failed(AskError::NotRunning(io::Error::new(
                e.kind(),
                format!("no socket at {}", path.display()),
            ))));
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(Attempt::Failed(AskError::NotRunning(io::Error::new(
                e.kind(),
                format!("stale socket at {}, nobody answers", path.display()),
            ))));
        }
        Err(e) => return Err(failed(e)),
    };
    stream
        .set_read_timeout(Some(deadline.within))
        .and_then(|()| stream.set_write_timeout(Some(deadline.within)))
        .map_err(failed)?;
    let late = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    };
    let timeout = || {
        Attempt::Failed(AskError::Timeout {
            within: deadline.within,
            waiting: deadline.waiting,
        })
    };
    let frame = protocol::frame(&protocol::encode_at(version, request));
    match send(&mut stream, &frame, exe) {
        Ok(()) => {}
        // The supervisor may have answered (a refusal) and closed already: read that.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) if late(&e) => return Err(timeout()),
        Err(e) => return Err(failed(e)),
    }
    // Interim responses (a probation under way) come first, each said as it comes;
    // then the answer.
    let mut told = false;
    loop {
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).map_err(|e| {
            if late(&e) {
                return timeout();
            }
            if told {
                return failed(io::Error::new(
                    e.kind(),
                    format!("the supervisor closed the connection before its verdict ({e})"),
                ));
            }
            Attempt::Unanswered(io::Error::new(
                e.kind(),
                format!("the supervisor closed the connection without answering ({e})"),
            ))
        })?;
        let invalid = |e| failed(io::Error::new(io::ErrorKind::InvalidData, e));
        let len = protocol::frame_len(header).map_err(invalid)?;
        let mut body = vec![0u8; len];
        stream
            .read_exact(&mut body)
            .map_err(|e| if late(&e) { timeout() } else { failed(e) })?;
        let (version, response) = protocol::decode_any_response(&body).map_err(invalid)?;
        if !response.is_interim() {
            return Ok((version, response));
        }
        told = true;
        interim(&response);
    }
}

/// Writes `frame`, with `exe` attached to its first bytes if given.
fn send(stream: &mut UnixStream, frame: &[u8], exe: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let Some(exe) = exe else {
        return stream.write_all(frame);
    };
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [exe];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("the fd does not fit the control buffer"));
    }
    let sent = rustix::net::sendmsg(
        stream.as_fd(),
        &[IoSlice::new(frame)],
        &mut control,
        sys::SEND_NOSIGNAL,
    )?;
    stream.write_all(&frame[sent..])
}
