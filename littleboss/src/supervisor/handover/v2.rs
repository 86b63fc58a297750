//! The handover in the layout of state version 2 ([`HandoverV2`]): version 1's, and
//! the conversions between the machine's moves and [`MovesV2`].

use crate::supervisor::machine::{ChildId, MovesRecord, Transit};
use crate::wire::state_v1::HandoverV1;
use crate::wire::state_v2::{AdoptsV2, HandoverV2, MovedV2, MovesV2, TransitV2};

use super::Handover;

impl HandoverV2 {
    /// Version 1's layout `v1` of a handover, with its `moves`.
    pub(crate) fn from_handover(v1: HandoverV1, moves: &MovesRecord) -> HandoverV2 {
        HandoverV2 {
            v1,
            moves: MovesV2::from_record(moves),
        }
    }

    /// The handover this layout holds.
    pub(crate) fn into_handover(self) -> Handover {
        Handover {
            moves: self.moves.into_record(),
            ..self.v1.into_handover()
        }
    }
}

impl MovesV2 {
    fn from_record(m: &MovesRecord) -> MovesV2 {
        MovesV2 {
            adopts: (m.adopts.iter())
                .map(|(child, listeners)| AdoptsV2 {
                    child: child.0,
                    listeners: listeners.iter().cloned().collect(),
                })
                .collect(),
            next: m.next,
            transit: (m.transit.iter())
                .map(|(&ours, t)| TransitV2 {
                    ours,
                    from: t.from.0,
                    id: t.id,
                    to: t.to.0,
                })
                .collect(),
            moved: (m.moved.iter())
                .map(|(child, &count)| MovedV2 {
                    child: child.0,
                    count,
                })
                .collect(),
        }
    }

    fn into_record(self) -> MovesRecord {
        MovesRecord {
            adopts: (self.adopts.into_iter())
                .map(|a| (ChildId(a.child), a.listeners.into_iter().collect()))
                .collect(),
            next: self.next,
            transit: (self.transit.into_iter())
                .map(|t| {
                    let transit = Transit {
                        from: ChildId(t.from),
                        id: t.id,
                        to: ChildId(t.to),
                    };
                    (t.ours, transit)
                })
                .collect(),
            moved: (self.moved.into_iter())
                .map(|m| (ChildId(m.child), m.count))
                .collect(),
        }
    }
}

/// The moves as the next image reads them: written in version 2's layout and read
/// back. The machine's tests play an upgrade's exec with it.
#[cfg(test)]
pub(crate) fn moves_through_v2(moves: &MovesRecord) -> MovesRecord {
    let read: MovesV2 = postcard::from_bytes(&moves_v2_bytes(moves)).expect("and reads back");
    read.into_record()
}

/// The moves in version 2's layout.
#[cfg(test)]
fn moves_v2_bytes(moves: &MovesRecord) -> Vec<u8> {
    postcard::to_stdvec(&MovesV2::from_record(moves)).expect("the moves serialize")
}
