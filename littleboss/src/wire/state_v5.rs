//! The upgrade state of version 5: version 4 followed by what each event's new child
//! took of the state of the child it replaced (state transfer; pinned in
//! `littleboss/tests/golden/upgrade-state.txt`).
//!
//! A reload's event records the bytes and named fds its new child took once the
//! transfer is committed, and the journal crosses an upgrade, so that record does too.
//! From version 4 (an upgrade from an older release), or written in version 4 (for a
//! binary that reads only that), the events are the same without it. The transfers
//! themselves are not part of the state: an upgrade re-executes after its reload, when
//! they have ended. As with the versions before, these types are the layout and
//! nothing else; the bytes of a [`HandoverV5`] are those of its [`HandoverV4`]
//! followed by the list.

use serde::{Deserialize, Serialize};

use super::state_v4::HandoverV4;

/// The whole handover of version 5.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandoverV5 {
    pub(crate) v4: HandoverV4,
    /// For each event of the journal that records a state taken, oldest first:
    /// `(event number, bytes, named fds)`.
    pub(crate) states: Vec<(u64, u64, u32)>,
}
