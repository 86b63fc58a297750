//! The client side of the control socket: one request, one answer, at the highest
//! protocol version that this binary and the supervisor both speak.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::protocol::{self, Request, Response, Versions};

/// How long `status` waits for an answer (stop and reload wait as long as they take;
/// the supervisor bounds them with its own timeouts).
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a `status` or `stop` is tried again when the supervisor closed the
/// connection without a word: the moment it re-executes itself (an upgrade) closes the
/// connections it has not answered. Both requests can be asked twice.
const RETRY_FOR: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum AskError {
    /// No supervisor listens at the path; the text says what was found.
    NotRunning(String),
    /// The supervisor does not speak a version in which the request exists.
    Version(String),
    Io(io::Error),
}

/// Sends one request to the supervisor at `path` and reads its one answer.
///
/// First contact is a `Status` at this binary's oldest version (1, which every
/// supervisor of this release and the one before speaks); its answer says the
/// supervisor's newest version, and the request goes at the highest version both speak.
pub(crate) fn ask(path: &Path, request: &Request) -> Result<Response, AskError> {
    let ours = Versions::ours();
    if matches!(request, Request::Stop) {
        // Laid out alike in every version: asked at once, so that it is one request
        // (a crowded supervisor keeps a slot for a stop, not for a status first).
        let (answered_at, response) = ask_at(path, ours.oldest, request)?;
        if answered_at != ours.oldest && ours.contains(answered_at) {
            return ask_at(path, answered_at, request).map(|(_, r)| r);
        }
        return Ok(response);
    }
    let mut contact = ours.oldest;
    let (answered_at, mut first) = ask_at(path, contact, &Request::Status)?;
    // A supervisor that does not speak our oldest refuses it in its own version: if we
    // speak that one too, it is the first contact.
    if answered_at != contact && ours.contains(answered_at) {
        contact = answered_at;
        first = ask_at(path, contact, &Request::Status)?.1;
    }
    let Response::Status(status) = &first else {
        // A refusal (of this client, or of its version): the answer to anything.
        return Ok(first);
    };
    // It answered at `contact`, so it speaks that; its newest is in the answer.
    let theirs = Versions {
        oldest: status.protocols[0].min(contact),
        newest: status.protocol,
    };
    let Some(version) = ours.common(theirs) else {
        return Err(AskError::Version(format!(
            "the running supervisor speaks littleboss protocol {theirs}, this binary speaks {ours}"
        )));
    };
    if request.since() > version {
        return Err(AskError::Version(refusal(request, theirs.newest)));
    }
    if matches!(request, Request::Status) && version == contact {
        return Ok(first);
    }
    ask_at(path, version, request).map(|(_, r)| r)
}

/// Why a supervisor of protocol `theirs` cannot do `request`.
fn refusal(request: &Request, theirs: u16) -> String {
    match request {
        Request::Upgrade(_) => format!(
            "the running supervisor speaks protocol {theirs} and cannot upgrade itself: stop and start it with this binary"
        ),
        _ => format!("the running supervisor speaks protocol {theirs}, which lacks this request"),
    }
}

/// One request at `version`; a `status` or `stop` whose connection is closed without
/// an answer is asked again, for a few seconds.
fn ask_at(path: &Path, version: u16, request: &Request) -> Result<(u16, Response), AskError> {
    let retry = matches!(request, Request::Status | Request::Stop);
    let started = Instant::now();
    loop {
        match ask_once(path, version, request) {
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

fn ask_once(path: &Path, version: u16, request: &Request) -> Result<(u16, Response), Attempt> {
    let failed = |e| Attempt::Failed(AskError::Io(e));
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Attempt::Failed(AskError::NotRunning(format!(
                "no socket at {}",
                path.display()
            ))));
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(Attempt::Failed(AskError::NotRunning(format!(
                "stale socket at {}, nobody answers",
                path.display()
            ))));
        }
        Err(e) => return Err(failed(e)),
    };
    if matches!(request, Request::Status) {
        stream
            .set_read_timeout(Some(STATUS_TIMEOUT))
            .map_err(failed)?;
    }
    match stream.write_all(&protocol::frame(&protocol::encode_at(version, request))) {
        Ok(()) => {}
        // The supervisor may have answered (a refusal) and closed already: read that.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(failed(e)),
    }
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).map_err(|e| {
        Attempt::Unanswered(io::Error::new(
            e.kind(),
            format!("the supervisor closed the connection without answering ({e})"),
        ))
    })?;
    let invalid = |e| failed(io::Error::new(io::ErrorKind::InvalidData, e));
    let len = protocol::frame_len(header).map_err(invalid)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(failed)?;
    protocol::decode_any_response(&body).map_err(invalid)
}
