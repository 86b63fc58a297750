//! The rules that `littleboss` and its `#[littleboss::main]` attribute both apply to what
//! a program declares: listener specs, names and wait times. Use them through the
//! `littleboss` crate.
//!
//! The attribute checks every literal at compile time; the builder checks the same
//! values when the program runs. The two must agree: a spec the attribute accepts must
//! parse at run time, and a name the builder accepts must be one the command line can
//! reach. A proc-macro crate cannot share code with the runtime crate that re-exports
//! it (the runtime depends on the macros, so the other direction would be a cycle), so
//! the rules live here, below both, and every error message is written once:
//! the attribute's compile error and the runtime's error say the same thing.
//!
//! - [`spec`]: `NETWORK:ADDRESS`, as in `tcp::443` or `udp:127.0.0.1:5353`.
//! - [`names`]: the service name, the control flag and listener names.
//! - [`user`]: the rule that ties `group` to `user`.
//! - [`wait`]: `lameduck`, `settle`, `ready_timeout`, `probation` and `state_timeout`,
//!   their spelling (`"2s"`, `"250ms"`), their one maximum,
//!   [`MAX_WAIT`](wait::MAX_WAIT), and the rule that ties `state_timeout` to
//!   `ready_timeout`.
//! - [`share`]: `probation_5xx`, a share in percent (`"5%"`).
//!
//! This crate has no dependencies but an optional `serde` (the `serde` feature derives
//! `Serialize` and `Deserialize` for [`spec::Network`], which the runtime sends over its
//! channel), so the attribute builds as fast as before.

#![deny(missing_docs)]

pub mod names;
pub mod share;
pub mod spec;
pub mod user;
pub mod wait;
