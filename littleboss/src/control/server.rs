//! The control socket's server: one request and one answer a connection, from this
//! user (or root) only. [`MAX_CLIENTS`] connections are served at once; the ones beyond
//! are read briefly, so that a `stop` among them is served in a slot kept for it, and
//! the others are told that the supervisor is busy: idle clients can never make a stop
//! fail, and no connection is closed without an answer but an idle one.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::net::RecvFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc};

use crate::channel;
use crate::control::protocol::{self, ReloadRequest, Request, Response, Versions};
use crate::control::status_fit;
use crate::logger::{Level, Logger};

/// What the server tells the supervisor's loop about its clients, each named by a
/// number of its own.
#[derive(Debug)]
pub(crate) enum ClientEvent {
    /// A request, with where its answer goes: any interim responses
    /// ([`Response::is_interim`]), then the answer, which ends the exchange.
    Request {
        client: u64,
        request: Request,
        reply: mpsc::UnboundedSender<Response>,
        /// The client's own executable, passed as an fd (a reload of protocol 2).
        exe: Option<OwnedFd>,
    },
    /// The client closed its connection before it was answered.
    Gone { client: u64 },
    /// An upgrade: the connection itself goes to the supervisor, which answers it
    /// (from its next image, if the upgrade gets that far) at `version`.
    Upgrade {
        client: u64,
        request: ReloadRequest,
        version: u16,
        stream: std::os::unix::net::UnixStream,
        exe: Option<OwnedFd>,
    },
}

/// Connections served at once. Each costs a task and a small buffer, and an idle one
/// is dropped after [`REQUEST_TIMEOUT`].
const MAX_CLIENTS: usize = 256;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections beyond [`MAX_CLIENTS`] are still read, for this long at most, so that a
/// `stop` among them is served (in the one slot kept for it) and the others are told
/// that the supervisor is busy.
const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections beyond the cap read at once; past these, a connection is told at once
/// that the supervisor is busy, without being read.
const MAX_OVERFLOW: usize = 1024;

/// The connections being served: the supervisor waits for them to write their last
/// answers before it exits.
#[derive(Clone, Debug)]
pub(crate) struct Connections {
    slots: Arc<Semaphore>,
    /// The slot kept for a `stop` that comes when every other slot is taken.
    stop: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    refused: Arc<AtomicU64>,
}

impl Connections {
    pub(crate) fn new() -> Connections {
        Connections {
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
            stop: Arc::new(Semaphore::new(1)),
            overflow: Arc::new(Semaphore::new(MAX_OVERFLOW)),
            refused: Arc::default(),
        }
    }

    /// Waits (at most `limit`) until every connection has been answered and closed.
    pub(crate) async fn drain(&self, limit: Duration) {
        let all = MAX_CLIENTS as u32;
        let both = async {
            let _slots = self.slots.acquire_many(all).await;
            let _stop = self.stop.acquire().await;
        };
        let _ = tokio::time::timeout(limit, both).await;
    }
}

/// What a client beyond the cap is told, and what the log says of it.
fn busy() -> String {
    format!("the supervisor is busy: {MAX_CLIENTS} control connections are open; try again")
}

/// An fd that holds a place: `/dev/null`, opened close-on-exec.
fn spare_fd() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

/// Whether `e` says this process (or the system) has no fd to give.
fn is_out_of_fds(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Accepts control connections until the supervisor's loop goes away.
pub(crate) async fn serve(
    listener: UnixListener,
    requests: mpsc::Sender<ClientEvent>,
    name: String,
    logger: Logger,
    connections: Connections,
    first_client: u64,
) {
    let mut next_client = first_client;
    // An fd kept in reserve: out of fds, the supervisor gives it up to accept one more
    // control connection (a `status` or a `stop` still gets its answer), and takes it
    // back once it can.
    let mut reserve = spare_fd();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if is_out_of_fds(&e) && reserve.is_some() => {
                reserve = None;
                continue;
            }
            Err(e) => {
                // Out of fds, most likely: wait a little rather than spin.
                logger.log(Level::Warn, &name, &format!("control socket accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if reserve.is_none() {
            reserve = spare_fd();
        }
        next_client += 1;
        let client = Client {
            id: next_client,
            requests: requests.clone(),
            name: name.clone(),
            logger: logger.clone(),
        };
        if let Ok(slot) = Arc::clone(&connections.slots).try_acquire_owned() {
            tokio::spawn(async move {
                handle(stream, &client).await;
                drop(slot);
            });
        } else if let Ok(reading) = Arc::clone(&connections.overflow).try_acquire_owned() {
            let connections = connections.clone();
            tokio::spawn(async move {
                overflow(stream, &client, &connections).await;
                drop(reading);
            });
        } else {
            // Too many to read even briefly: the answer fits in the socket's empty
            // buffer, so it is written without waiting, and the client reads it.
            client.refuse_busy(&connections);
            let failed = Response::Failed { reason: busy() };
            let oldest = Versions::ours().oldest;
            let _ = stream.try_write(&protocol::frame(&protocol::encode_response(
                oldest, &failed,
            )));
        }
    }
}

/// One connection's number and what it needs to pass its request on.
#[derive(Debug)]
struct Client {
    id: u64,
    requests: mpsc::Sender<ClientEvent>,
    name: String,
    logger: Logger,
}

impl Client {
    /// Logs a `busy` refusal, with the count of them so far.
    fn refuse_busy(&self, connections: &Connections) {
        let count = connections.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let times = if count == 1 { "time" } else { "times" };
        self.logger.log(
            Level::Warn,
            &self.name,
            &format!(
                "refused a control connection: {} ({count} {times} so far)",
                busy()
            ),
        );
    }
}

/// A connection beyond the cap: a `stop` takes the slot kept for it; anything else, or
/// nothing within [`OVERFLOW_TIMEOUT`], is answered `busy`.
async fn overflow(mut stream: UnixStream, client: &Client, connections: &Connections) {
    if let Err(refusal) = check_peer(&stream) {
        return refuse_peer(stream, client, refusal).await;
    }
    let request = tokio::time::timeout(OVERFLOW_TIMEOUT, read_request(&mut stream)).await;
    let version = match &request {
        Ok(Ok((version, _, _)) | Err((version, _))) => *version,
        Err(_) => Versions::ours().oldest,
    };
    if let Ok(Ok((version, Request::Stop, _))) = request {
        if let Ok(slot) = Arc::clone(&connections.stop).try_acquire_owned() {
            forward(stream, client, Request::Stop, version, None).await;
            drop(slot);
            return;
        }
    }
    client.refuse_busy(connections);
    let _ = reply(&mut stream, version, &Response::Failed { reason: busy() }).await;
}

/// Tells a peer of another user why it is refused.
async fn refuse_peer(mut stream: UnixStream, client: &Client, refusal: PeerError) {
    client.logger.log(
        Level::Warn,
        &client.name,
        &format!("refused a control connection: {refusal}"),
    );
    // Let the client finish sending (its request is not looked at), so that it reads
    // the refusal instead of failing on a closed socket.
    let _ = tokio::time::timeout(Duration::from_secs(1), drain_frame(&mut stream)).await;
    let oldest = Versions::ours().oldest;
    let reason = refusal.to_string();
    let _ = reply(&mut stream, oldest, &Response::Failed { reason }).await;
}

async fn handle(mut stream: UnixStream, client: &Client) {
    if let Err(refusal) = check_peer(&stream) {
        return refuse_peer(stream, client, refusal).await;
    }
    let (version, request, exe) =
        match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
            Ok(Ok(request)) => request,
            Ok(Err((version, e))) => {
                let (logger, name) = (&client.logger, &client.name);
                logger.log(Level::Warn, name, &format!("bad control request: {e}"));
                let reason = e.to_string();
                let _ = reply(&mut stream, version, &Response::Failed { reason }).await;
                return;
            }
            Err(_) => return,
        };
    if let Request::Reload(reload) | Request::Upgrade(reload) = &request {
        if let Err(refused) = status_fit::check_reload(reload) {
            let (logger, name) = (&client.logger, &client.name);
            logger.log(Level::Warn, name, &format!("reload {refused}"));
            let reason = refused.to_string();
            let _ = reply(&mut stream, version, &Response::Failed { reason }).await;
            return;
        }
    }
    if let Request::Upgrade(request) = request {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let incoming = ClientEvent::Upgrade {
            client: client.id,
            request,
            version,
            stream,
            exe,
        };
        let _ = client.requests.send(incoming).await;
        return;
    }
    forward(stream, client, request, version, exe).await;
}

/// Passes `request` to the supervisor's loop and writes its answer, or tells the loop
/// that the client went away first.
async fn forward(
    mut stream: UnixStream,
    client: &Client,
    request: Request,
    version: u16,
    exe: Option<OwnedFd>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let incoming = ClientEvent::Request {
        client: client.id,
        request,
        reply: tx,
        exe,
    };
    if client.requests.send(incoming).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            response = rx.recv() => {
                let Some(response) = response else { return };
                // A client of protocol 3 or before knows of no interim response: it is
                // answered as it always was (a reload on probation is `Reloaded` now,
                // and the verdict goes only to the log).
                let (response, interim) = match response.for_version(version) {
                    Some(older) => (older, false),
                    None => {
                        let interim = response.is_interim();
                        (response, interim)
                    }
                };
                if reply(&mut stream, version, &response).await.is_err() || !interim {
                    return;
                }
            }
            () = closed(&mut stream) => {
                let _ = client.requests.send(ClientEvent::Gone { client: client.id }).await;
                return;
            }
        }
    }
}

/// Resolves when the client has closed its end (anything more it sends is ignored).
async fn closed(stream: &mut UnixStream) {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Only the supervisor's own user, or root, may command it.
///
/// (A peer in another pid namespace, such as a host's root talking to a container's
/// supervisor, has no pid here; its uid is what counts.)
fn check_peer(stream: &UnixStream) -> Result<(), PeerError> {
    let cred = stream.peer_cred().map_err(PeerError::Credentials)?;
    let ours = rustix::process::geteuid().as_raw();
    if cred.uid() == ours || cred.uid() == 0 {
        return Ok(());
    }
    Err(PeerError::OtherUser {
        uid: cred.uid(),
        pid: cred.pid(),
        ours,
    })
}

/// Why a control connection is refused before its request is read: the peer is of
/// another user, or cannot be told.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("cannot read the peer's credentials: {0}")]
    Credentials(#[source] std::io::Error),
    /// `pid` is `None` for a peer in another pid namespace.
    #[error(
        "permission denied: uid {uid} (pid {}) is not the supervisor's user (uid {ours})",
        .pid.map_or_else(|| "unknown".to_string(), |pid| pid.to_string())
    )]
    OtherUser {
        uid: u32,
        pid: Option<i32>,
        ours: u32,
    },
}

/// Reads and discards one frame header and up to its (capped) length.
async fn drain_frame(stream: &mut UnixStream) {
    let mut header = [0u8; 4];
    if stream.read_exact(&mut header).await.is_err() {
        return;
    }
    let Ok(len) = protocol::frame_len(header) else {
        return;
    };
    let mut body = vec![0u8; len];
    let _ = stream.read_exact(&mut body).await;
}

/// Why a control request could not be read: the words its client is answered with.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("reading the frame header: {0}")]
    Header(std::io::Error),
    #[error("reading a frame of {len} bytes: {source}")]
    Body { len: usize, source: std::io::Error },
    /// A frame too long, or a body that is not a request of a version this speaks.
    #[error(transparent)]
    Decode(#[from] protocol::DecodeError),
    #[error("this request needs protocol {since}; it came as protocol {version}")]
    TooNew { since: u16, version: u16 },
}

/// A request and its version; or why not, and the version to say it in (the client's
/// own, if it is one this supervisor speaks, so that the client can read the refusal).
async fn read_request(
    stream: &mut UnixStream,
) -> Result<(u16, Request, Option<OwnedFd>), (u16, Unreadable)> {
    let ours = Versions::ours();
    let (header, mut fds) = read_header(stream)
        .await
        .map_err(|e| (ours.oldest, Unreadable::Header(e)))?;
    let len = protocol::frame_len(header).map_err(|e| (ours.oldest, e.into()))?;
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|source| (ours.oldest, Unreadable::Body { len, source }))?;
    let theirs = protocol::peek_version(&body, ours).map_or(ours.oldest, |(v, _)| v);
    let (version, request) =
        protocol::decode::<Request>(&body, ours).map_err(|e| (theirs, e.into()))?;
    if request.since() > version {
        let since = request.since();
        return Err((version, Unreadable::TooNew { since, version }));
    }
    // Only a reload or an upgrade of protocol 2 carries an fd, the client's executable;
    // any other fd is closed here, and the request goes on without it.
    let may_carry = version >= 2 && matches!(request, Request::Reload(_) | Request::Upgrade(_));
    let exe = if may_carry && fds.len() == 1 {
        fds.pop()
    } else {
        None
    };
    Ok((version, request, exe))
}

/// A frame's header, and the fds that came with its first byte (a client's executable).
async fn read_header(stream: &mut UnixStream) -> std::io::Result<([u8; 4], Vec<OwnedFd>)> {
    let mut header = [0u8; 4];
    let (got, fds) = loop {
        stream.readable().await?;
        let shared: &UnixStream = stream;
        let received = shared.try_io(Interest::READABLE, || {
            channel::recvmsg(shared.as_fd(), &mut header, RecvFlags::DONTWAIT)
        });
        match received {
            Ok((got, _, fds)) => break (got, fds),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    if got == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    stream.read_exact(&mut header[got..]).await?;
    Ok((header, fds))
}

/// Writes `response`; a status is cut to fit in a frame ([`status_fit::fit`]), a history
/// loses its oldest events to fit ([`status_fit::fit_history`]), and a
/// reply that would not fit anyway is replaced by a refusal that says so.
async fn reply(stream: &mut UnixStream, version: u16, response: &Response) -> std::io::Result<()> {
    let mut message = match response {
        Response::Status(status) => protocol::encode_response(
            version,
            &Response::Status(Box::new(status_fit::fit((**status).clone()))),
        ),
        Response::History(history) => protocol::encode_response(
            version,
            &Response::History(status_fit::fit_history(history.clone(), version)),
        ),
        other => protocol::encode_response(version, other),
    };
    if message.len() > protocol::MAX_CONTROL_FRAME {
        message = protocol::encode_response(
            version,
            &Response::Failed {
                reason: format!(
                    "the answer would take {} bytes, more than a control frame holds ({})",
                    message.len(),
                    protocol::MAX_CONTROL_FRAME
                ),
            },
        );
    }
    stream.write_all(&protocol::frame(&message)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_peer_is_told_who_it_is() {
        let known = PeerError::OtherUser {
            uid: 1001,
            pid: Some(42),
            ours: 1000,
        };
        assert_eq!(
            known.to_string(),
            "permission denied: uid 1001 (pid 42) is not the supervisor's user (uid 1000)"
        );
        let unknown = PeerError::OtherUser {
            uid: 1001,
            pid: None,
            ours: 1000,
        };
        assert_eq!(
            unknown.to_string(),
            "permission denied: uid 1001 (pid unknown) is not the supervisor's user (uid 1000)"
        );
    }
}
