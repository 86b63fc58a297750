//! The control socket: its messages and framing ([`protocol`]), the journal's events
//! as they cross it ([`history`]), the supervisor's
//! server ([`server`]), which keeps each status within a frame ([`status_fit`]), and the
//! client that the command-line modes use ([`client`]).

pub(crate) mod client;
#[cfg(test)]
mod golden_tests;
pub(crate) mod history;
pub(crate) mod protocol;
pub(crate) mod server;
pub(crate) mod status_fit;
