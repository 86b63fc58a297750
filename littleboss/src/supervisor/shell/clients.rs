//! The control socket's clients: their requests in, their answers out.

use std::time::Duration;

use crate::control::protocol::{self, Response};
use crate::control::server::ClientEvent;

use super::Shell;
use crate::supervisor::machine::{ClientId, Input};

/// A client that waits on a connection the shell holds itself (an upgrade's, which
/// may be answered by the supervisor's next image).
#[derive(Debug)]
pub(super) struct Held {
    pub(super) version: u16,
    pub(super) stream: std::os::unix::net::UnixStream,
}

/// Tells a client whose connection the shell holds something before its answer. The
/// message is small and the connection has nothing else queued: it is written at once,
/// ahead of the answer, or not at all.
fn tell_held(held: &Held, response: &Response) {
    use std::io::Write;
    if held.version < protocol::INTERIM_SINCE {
        return;
    }
    let bytes = protocol::frame(&protocol::encode_response(held.version, response));
    let Ok(mut stream) = held.stream.try_clone() else {
        return;
    };
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(&bytes);
}

/// Answers a client whose connection the shell holds, off the loop.
pub(super) fn answer_held(held: Held, response: Response) {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut stream = held.stream;
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let bytes = protocol::frame(&protocol::encode_response(held.version, &response));
        let _ = stream.write_all(&bytes);
    });
}

impl Shell {
    /// Turns what the control socket's server says of a client into an input.
    pub(super) fn incoming(&mut self, incoming: ClientEvent) {
        match incoming {
            ClientEvent::Request {
                client,
                request,
                reply,
                exe,
            } => {
                let client = self.client(client, exe);
                self.clients.insert(client, reply);
                self.handle(Input::Request { client, request });
            }
            ClientEvent::Gone { client } => {
                let client = ClientId(client);
                self.clients.remove(&client);
                self.exes.remove(&client);
                self.handle(Input::ClientGone { client });
            }
            ClientEvent::Upgrade {
                client,
                request,
                version,
                stream,
                exe,
            } => {
                let client = self.client(client, exe);
                self.held.insert(client, Held { version, stream });
                let request = crate::control::protocol::Request::Upgrade(request);
                self.handle(Input::Request { client, request });
            }
        }
    }

    /// A client with a request: its id, which the next one's follows, and the
    /// executable it passed, kept for the request's preparation.
    fn client(&mut self, client: u64, exe: Option<std::os::fd::OwnedFd>) -> ClientId {
        self.next_client = self.next_client.max(client + 1);
        let client = ClientId(client);
        if let Some(exe) = exe {
            self.exes.insert(client, exe);
        }
        client
    }

    /// Answers a client: on its connection's task, or on the connection the shell
    /// holds itself.
    pub(super) fn interim(&mut self, client: ClientId, response: Response) {
        if let Some(reply) = self.clients.get(&client) {
            let _ = reply.send(response);
        } else if let Some(held) = self.held.get(&client) {
            tell_held(held, &response);
        }
    }

    pub(super) fn answer(&mut self, client: ClientId, response: Response) {
        self.exes.remove(&client);
        if let Some(reply) = self.clients.remove(&client) {
            let _ = reply.send(response);
        } else if let Some(held) = self.held.remove(&client) {
            answer_held(held, response);
        }
    }
}
