//! Bytes that must not be seen: a TLS session's keys on their way between two
//! processes. Held in a buffer that is zeroed when dropped, shown by `Debug` only as
//! its length, and never printed, logged or written to a file; the supervisor relays
//! them without reading them.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Secret bytes: zeroed when dropped, redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Secret(Zeroizing<Vec<u8>>);

// Made and read by the HTTP helpers' TLS moves (feature `rustls`); a build without them
// only relays secrets.
#[cfg_attr(not(feature = "rustls"), allow(dead_code))]
impl Secret {
    /// `bytes`, from now on as a secret (their buffer is zeroed when dropped).
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>) -> Secret {
        Secret(bytes)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_length_only() {
        let secret = Secret::new(Zeroizing::new(vec![0xab; 3]));
        assert_eq!(format!("{secret:?}"), "Secret(3 bytes)");
    }
}
