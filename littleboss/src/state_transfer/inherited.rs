//! [`Inherited`]: the state of the process this one replaced, as the program reads it.

use std::fmt;
use std::os::fd::OwnedFd;

use serde::de::DeserializeOwned;

use super::sealed::Contents;
use super::value;
use crate::error::Error;

/// The state of the process this one replaced: its bytes and the fds it named.
///
/// The bytes are a read-only mapping of the sealed file they came in, without a copy
/// (Linux, FreeBSD), or were read into memory (macOS); dropping it unmaps them and
/// closes the fds not taken.
///
/// ```no_run
/// # async fn f(lb: littleboss::Context) -> Result<(), littleboss::Error> {
/// if let Some(mut inherited) = lb.take_state().await? {
///     for (name, fd) in inherited.take_fds() {
///         // "upstream": a connection the old process kept open, say.
/// #       let _ = (name, fd);
///     }
///     let warm: &[u8] = inherited.bytes();
///     // rebuild the cache from `warm`
/// #   let _ = warm;
/// }
/// # Ok(()) }
/// ```
pub struct Inherited {
    pub(super) contents: Contents,
    pub(super) fds: Vec<(String, OwnedFd)>,
    /// The giver's pid, as the supervisor says it.
    pub(super) from: u32,
}

impl Inherited {
    /// The state's bytes, as the process replaced gave them.
    pub fn bytes(&self) -> &[u8] {
        self.contents.as_slice()
    }

    /// The named fds it gave, in its order; the next call gives none.
    pub fn take_fds(&mut self) -> Vec<(String, OwnedFd)> {
        std::mem::take(&mut self.fds)
    }

    /// The pid of the process that gave it.
    pub fn predecessor_pid(&self) -> u32 {
        self.from
    }

    /// The state as a `T`, given with
    /// [`StateRequest::give_value`](crate::StateRequest::give_value) in format
    /// version `version`.
    ///
    /// A state of another version is an error that names both
    /// ([`StateProblem::Version`](crate::StateProblem::Version)): the program decides
    /// whether to start cold or to refuse to become ready. A state that does not decode
    /// as `T` is an error too, never a value misread.
    ///
    /// ```no_run
    /// # #[derive(serde::Deserialize, Default)] struct Cache;
    /// # async fn f(lb: littleboss::Context) -> Result<(), littleboss::Error> {
    /// const FORMAT: u32 = 2;
    /// let cache = match lb.take_state().await? {
    ///     Some(inherited) => inherited.take_value::<Cache>(FORMAT).unwrap_or_else(|e| {
    ///         eprintln!("starting cold: {e}");
    ///         Cache::default()
    ///     }),
    ///     None => Cache::default(),
    /// };
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn take_value<T: DeserializeOwned>(&self, version: u32) -> Result<T, Error> {
        value::read(self.bytes(), version).map_err(Error::from)
    }

    /// The format version of a state given with
    /// [`StateRequest::give_value`](crate::StateRequest::give_value): its first 4
    /// bytes, little-endian (`None` if it holds fewer). For a state given as bytes, it
    /// is whatever they are.
    pub fn format_version(&self) -> Option<u32> {
        value::version_of(self.bytes())
    }
}

impl fmt::Debug for Inherited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.fds.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Inherited")
            .field("bytes", &self.bytes().len())
            .field("fds", &names)
            .field("predecessor_pid", &self.from)
            .finish()
    }
}
