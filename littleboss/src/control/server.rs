//! The control socket's server: one request and one answer a connection, from this
//! user (or root) only.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::control::protocol::{self, ReloadRequest, Request, Response, Versions};
use crate::logger::{Level, Logger};

/// What the server tells the supervisor's loop about its clients, each named by a
/// number of its own.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A request, with where its answer goes.
    Request {
        client: u64,
        request: Request,
        reply: oneshot::Sender<Response>,
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
    },
}

/// Connections served at once; more are closed at once. Each costs a task and a small
/// buffer, and an idle one is dropped after [`REQUEST_TIMEOUT`].
const MAX_CLIENTS: usize = 256;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The connections being served: the supervisor waits for them to write their last
/// answers before it exits.
#[derive(Clone, Debug)]
pub(crate) struct Connections(Arc<Semaphore>);

impl Connections {
    pub(crate) fn new() -> Connections {
        Connections(Arc::new(Semaphore::new(MAX_CLIENTS)))
    }

    /// Waits (at most `limit`) until every connection has been answered and closed.
    pub(crate) async fn drain(&self, limit: Duration) {
        let all = MAX_CLIENTS as u32;
        let _ = tokio::time::timeout(limit, self.0.acquire_many(all)).await;
    }
}

/// Accepts control connections until the supervisor's loop goes away.
pub(crate) async fn serve(
    listener: UnixListener,
    requests: mpsc::Sender<Incoming>,
    name: String,
    logger: Logger,
    connections: Connections,
    first_client: u64,
) {
    let slots = connections.0;
    let mut next_client = first_client;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of fds, most likely: wait a little rather than spin.
                logger.log(Level::Warn, &name, &format!("control socket accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let requests = requests.clone();
        let name = name.clone();
        let logger = logger.clone();
        next_client += 1;
        let client = next_client;
        tokio::spawn(async move {
            handle(stream, client, &requests, &name, &logger).await;
            drop(slot);
        });
    }
}

async fn handle(
    mut stream: UnixStream,
    client: u64,
    requests: &mpsc::Sender<Incoming>,
    name: &str,
    logger: &Logger,
) {
    if let Err(refusal) = check_peer(&stream) {
        logger.log(
            Level::Warn,
            name,
            &format!("refused a control connection: {refusal}"),
        );
        // Let the client finish sending (its request is not looked at), so that it
        // reads the refusal instead of failing on a closed socket.
        let _ = tokio::time::timeout(Duration::from_secs(1), drain_frame(&mut stream)).await;
        let _ = reply(
            &mut stream,
            Versions::ours().oldest,
            &Response::Failed { reason: refusal },
        )
        .await;
        return;
    }
    let (version, request) =
        match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
            Ok(Ok(request)) => request,
            Ok(Err((version, e))) => {
                logger.log(Level::Warn, name, &format!("bad control request: {e}"));
                let _ = reply(&mut stream, version, &Response::Failed { reason: e }).await;
                return;
            }
            Err(_) => return,
        };
    if let Request::Upgrade(request) = request {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let incoming = Incoming::Upgrade {
            client,
            request,
            version,
            stream,
        };
        let _ = requests.send(incoming).await;
        return;
    }
    let (tx, rx) = oneshot::channel();
    let incoming = Incoming::Request {
        client,
        request,
        reply: tx,
    };
    if requests.send(incoming).await.is_err() {
        return;
    }
    tokio::select! {
        response = rx => {
            if let Ok(response) = response {
                let _ = reply(&mut stream, version, &response).await;
            }
        }
        () = closed(&mut stream) => {
            let _ = requests.send(Incoming::Gone { client }).await;
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
fn check_peer(stream: &UnixStream) -> Result<(), String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    let ours = rustix::process::geteuid().as_raw();
    if cred.uid() == ours || cred.uid() == 0 {
        return Ok(());
    }
    let pid = cred
        .pid()
        .map_or_else(|| "unknown".to_string(), |pid| pid.to_string());
    Err(format!(
        "permission denied: uid {} (pid {pid}) is not the supervisor's user (uid {ours})",
        cred.uid()
    ))
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

/// A request and its version; or why not, and the version to say it in (the client's
/// own, if it is one this supervisor speaks, so that the client can read the refusal).
async fn read_request(stream: &mut UnixStream) -> Result<(u16, Request), (u16, String)> {
    let ours = Versions::ours();
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| (ours.oldest, format!("reading the frame header: {e}")))?;
    let len = protocol::frame_len(header).map_err(|e| (ours.oldest, e.to_string()))?;
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| (ours.oldest, format!("reading a frame of {len} bytes: {e}")))?;
    let theirs = body
        .first_chunk::<2>()
        .map(|v| u16::from_le_bytes(*v))
        .filter(|v| ours.contains(*v))
        .unwrap_or(ours.oldest);
    let (version, request) =
        protocol::decode::<Request>(&body, ours).map_err(|e| (theirs, e.to_string()))?;
    if request.since() > version {
        return Err((
            version,
            format!(
                "this request needs protocol {}; it came as protocol {version}",
                request.since()
            ),
        ));
    }
    Ok((version, request))
}

async fn reply(stream: &mut UnixStream, version: u16, response: &Response) -> std::io::Result<()> {
    stream
        .write_all(&protocol::frame(&protocol::encode_response(
            version, response,
        )))
        .await
}
