//! The control socket: its messages and framing ([`protocol`]), the supervisor's
//! server ([`server`]) and the client that the command-line modes use ([`client`]).

pub(crate) mod client;
pub(crate) mod protocol;
pub(crate) mod server;
