//! The client side of the control socket: one request, one answer.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{self, Request, Response};

/// How long `status` waits for an answer (stop and reload wait as long as they take;
/// the supervisor bounds them with its own timeouts).
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum AskError {
    /// No supervisor listens at the path; the text says what was found.
    NotRunning(String),
    Io(io::Error),
}

/// Sends one request to the supervisor at `path` and reads its one answer.
pub(crate) fn ask(path: &Path, request: &Request) -> Result<Response, AskError> {
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(AskError::NotRunning(format!(
                "no socket at {}",
                path.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(AskError::NotRunning(format!(
                "stale socket at {}, nobody answers",
                path.display()
            )));
        }
        Err(e) => return Err(AskError::Io(e)),
    };
    if matches!(request, Request::Status) {
        stream
            .set_read_timeout(Some(STATUS_TIMEOUT))
            .map_err(AskError::Io)?;
    }
    match stream.write_all(&protocol::frame(&protocol::encode(request))) {
        Ok(()) => {}
        // The supervisor may have answered (a refusal) and closed already: read that.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(AskError::Io(e)),
    }
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).map_err(|e| {
        AskError::Io(io::Error::new(
            e.kind(),
            format!("the supervisor closed the connection without answering ({e})"),
        ))
    })?;
    let len = protocol::frame_len(header)
        .map_err(|e| AskError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(AskError::Io)?;
    protocol::decode(&body).map_err(|e| AskError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
}
