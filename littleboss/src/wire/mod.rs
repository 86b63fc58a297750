//! Layouts that cross an exec, frozen: each is a plain value that imports nothing of
//! the crate's, so that a change to the types the code works with can never change
//! the bytes a process of another release reads. The conversions live with their
//! users; the golden bytes in `littleboss/tests/golden/` pin each layout.
//!
//! - [`state_v1`]: the supervisor's upgrade handover, state version 1.
//! - [`state_v2`]: state version 2, version 1 followed by the connections moving.
//! - [`state_v3`]: state version 3, version 2 followed by the children that can stand
//!   by.
//! - [`state_v4`]: state version 4, version 3 followed by the journal and the counts
//!   behind the metrics.
//! - [`state_v5`]: state version 5, version 4 followed by the state each event's new
//!   child took.

pub(crate) mod state_v1;
pub(crate) mod state_v2;
pub(crate) mod state_v3;
pub(crate) mod state_v4;
pub(crate) mod state_v5;
