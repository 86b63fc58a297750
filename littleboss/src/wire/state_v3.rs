//! The upgrade state of version 3: version 2 followed by which children said they can
//! stand by (pinned in `littleboss/tests/golden/upgrade-state.txt`).
//!
//! A child says it once, before it is ready; the supervisor needs it at each reload
//! with a probation, to have the old child stand by instead of winding down. Without
//! it (an upgrade from version 2), every child inherited counts as one that cannot, and
//! a probation after the upgrade rolls back cold. As with versions 1 and 2, these types
//! are the layout and nothing else; the bytes of a [`HandoverV3`] are those of its
//! [`HandoverV2`] followed by the list.

use serde::{Deserialize, Serialize};

use super::state_v2::HandoverV2;

/// The whole handover of version 3.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandoverV3 {
    pub(crate) v2: HandoverV2,
    /// The ids of the children that can stand by, in order.
    pub(crate) stand_by: Vec<u64>,
}
