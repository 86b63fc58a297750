//! The handover in the layout of state version 3 ([`HandoverV3`]): version 2's, and
//! which children can stand by.

use crate::supervisor::machine::ChildId;
use crate::wire::state_v2::HandoverV2;
use crate::wire::state_v3::HandoverV3;

use super::Handover;

impl HandoverV3 {
    /// Version 2's layout `v2` of `handover`, with the children that can stand by.
    pub(crate) fn from_handover(v2: HandoverV2, handover: &Handover) -> HandoverV3 {
        let stand_by = (handover.state.children.values())
            .filter(|c| c.stands_by)
            .map(|c| c.id.0)
            .collect();
        HandoverV3 { v2, stand_by }
    }

    /// The handover this layout holds.
    pub(crate) fn into_handover(self) -> Handover {
        let mut handover = self.v2.into_handover();
        for id in self.stand_by {
            if let Some(child) = handover.state.children.get_mut(&ChildId(id)) {
                child.stands_by = true;
            }
        }
        handover
    }
}
