//! The upgrade state of version 2: version 1 followed by the connections moving
//! between children (pinned in `littleboss/tests/golden/upgrade-state-v2.txt`).
//!
//! Version 1 carries no moves, so a supervisor that writes it must wait, before it
//! re-executes, until no child is left to hand a connection over. Version 2 carries
//! which children adopt which listeners' connections and the connections forwarded and
//! not answered for yet, so the next image goes on relaying them: an upgrade
//! re-executes as soon as the supervisor holds no connection's fd itself.
//!
//! As with version 1, these types are the layout and nothing else, and import nothing
//! of the crate's; postcard writes a struct's fields in order, so the bytes of a
//! [`HandoverV2`] are those of its [`HandoverV1`] followed by those of its
//! [`MovesV2`].

use serde::{Deserialize, Serialize};

use super::state_v1::HandoverV1;

/// The whole handover of version 2.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandoverV2 {
    pub(crate) v1: HandoverV1,
    pub(crate) moves: MovesV2,
}

/// What the supervisor knows of connections moving between children.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct MovesV2 {
    /// The listeners each child adopts connections for.
    pub(crate) adopts: Vec<AdoptsV2>,
    /// The supervisor's id of the next connection forwarded.
    pub(crate) next: u64,
    /// Forwarded, waiting for the receiver's answer.
    pub(crate) transit: Vec<TransitV2>,
    /// How many connections each child handed over were taken.
    pub(crate) moved: Vec<MovedV2>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AdoptsV2 {
    pub(crate) child: u64,
    pub(crate) listeners: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TransitV2 {
    /// The supervisor's id for it.
    pub(crate) ours: u64,
    pub(crate) from: u64,
    /// The sender's id for it.
    pub(crate) id: u64,
    pub(crate) to: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MovedV2 {
    pub(crate) child: u64,
    pub(crate) count: u64,
}
