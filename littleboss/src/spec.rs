//! Listener specs: `NETWORK:ADDRESS`, as in `tcp::443` or `udp:127.0.0.1:5353`.
//!
//! The same parser checks the attribute's specs at compile time and the builder's and
//! the listener flags' when the program runs, so the two cannot disagree.
//!
//! ```
//! use littleboss::spec::{ListenerSpec, Network};
//! let spec = ListenerSpec::parse("tcp::443").unwrap();
//! assert_eq!(spec.network, Network::Tcp);
//! assert_eq!(spec.address.as_deref(), Some(":443"));
//! assert_eq!(ListenerSpec::parse("udp:").unwrap().address, None);
//! ```

pub use littleboss_rules::spec::{ListenerSpec, NETWORKS, Network, SpecError};

/// What the runtime uses and a program does not: a network's socket kind, and the
/// resolution of a spec's host name.
pub(crate) use littleboss_rules::spec::{Kind, resolve};
