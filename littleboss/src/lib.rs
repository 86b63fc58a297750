//! littleboss: self-supervising network services.
//!
//! (The crate documentation is filled in below.)

pub mod spec;

mod builder;
mod bypass;
mod channel;
mod child;
mod client;
mod context;
mod dir;
mod dispatch;
mod flags;
mod listener;
mod protocol;
mod supervisor;

pub use builder::{Flavor, Littleboss, MainResult};
pub use context::{Context, Mode};
pub use littleboss_macros::main;
pub use protocol::{PROTOCOL, Status};

/// What `#[littleboss::main]` expands to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::builder::{Flavor, Littleboss};
    pub use std::process::ExitCode;
    pub use std::time::Duration;
}
