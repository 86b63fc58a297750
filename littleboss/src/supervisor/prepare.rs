//! A reload's I/O before its child starts: opening the new executable and binding the
//! listeners the reload moves. Binding may resolve a host name or probe a stale unix
//! socket, both blocking calls, so it runs on a thread of its own, bounded by a
//! timeout, and the supervisor's loop goes on meanwhile.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::socket::{self, Bound, BoundAddr};
use crate::spec::{ListenerSpec, SpecError};

use super::spawn;
use super::state::ListenerRecord;

/// How long opening the binary and binding the listeners may take.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a reload opened: the executable, and the listeners bound anew (by index in the
/// listener set; `None` turns one off).
#[derive(Debug)]
pub(crate) struct Opened {
    pub exe: OwnedFd,
    pub rebound: Vec<(usize, Option<Bound>)>,
}

/// Why a reload's preparation failed. Its text is the reason the reload is refused
/// with; [`counts`](PrepareError::counts) says whether it is the program's failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    /// The new binary cannot be run.
    #[error(transparent)]
    Executable(#[from] spawn::ExecutableError),
    /// A flag names a listener the service does not have.
    #[error("no listener named {name:?}; the listeners are {}", .listeners.join(", "))]
    NoListener {
        name: String,
        listeners: Vec<String>,
    },
    /// A listener's flag gives an address its network cannot take.
    #[error("flag --{listener}: {source}")]
    Flag {
        listener: String,
        #[source]
        source: SpecError,
    },
    /// A listener could not be bound at its new address.
    #[error(transparent)]
    Bind(crate::error::Error),
    /// The work ended without an answer (it panicked).
    #[error("preparing the reload failed: {0}")]
    Lost(#[source] tokio::task::JoinError),
    /// It took longer than [`PREPARE_TIMEOUT`].
    #[error(
        "opening the binary and binding the listeners took longer than {} s",
        .0.as_secs()
    )]
    TimedOut(Duration),
}

impl PrepareError {
    /// Whether this counts as a failure of the program (its binary), rather than of
    /// the reload's request or of the system.
    pub(crate) fn counts(&self) -> bool {
        matches!(self, PrepareError::Executable(_))
    }
}

/// Opens `path` (or takes `exe`, the file a client passed as itself, which `path`
/// then only names) and binds what `overrides` moves, off the loop.
pub(crate) async fn open(
    path: PathBuf,
    exe: Option<OwnedFd>,
    listeners: Vec<ListenerRecord>,
    overrides: Vec<(String, String)>,
    unix_mode: Option<u32>,
) -> Result<Opened, PrepareError> {
    let work = tokio::task::spawn_blocking(move || {
        open_blocking(&path, exe, &listeners, &overrides, unix_mode)
    });
    match tokio::time::timeout(PREPARE_TIMEOUT, work).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(PrepareError::Lost(e)),
        Err(_) => Err(PrepareError::TimedOut(PREPARE_TIMEOUT)),
    }
}

fn open_blocking(
    path: &std::path::Path,
    exe: Option<OwnedFd>,
    listeners: &[ListenerRecord],
    overrides: &[(String, String)],
    unix_mode: Option<u32>,
) -> Result<Opened, PrepareError> {
    let exe = match exe {
        Some(fd) => spawn::checked_executable(fd, path)?,
        None => spawn::open_executable(path)?,
    };
    let mut rebound: Vec<(usize, Option<Bound>)> = Vec::new();
    for (i, (name, address)) in overrides.iter().enumerate() {
        // The last flag for a listener wins.
        if overrides[i + 1..].iter().any(|(later, _)| later == name) {
            continue;
        }
        let Some(index) = listeners.iter().position(|l| &l.name == name) else {
            return Err(PrepareError::NoListener {
                name: name.clone(),
                listeners: listeners.iter().map(|l| l.name.clone()).collect(),
            });
        };
        let record = &listeners[index];
        let spec = ListenerSpec::with_address(record.network, address).map_err(|source| {
            PrepareError::Flag {
                listener: name.clone(),
                source,
            }
        })?;
        let unchanged = match (&record.bound, &spec.address) {
            (None, None) => true,
            (Some((BoundAddr::Unix(path), _)), Some(address)) => path == address,
            (Some((BoundAddr::Ip(bound), _)), Some(_)) => crate::spec::resolve(&spec)
                .is_ok_and(|addrs| bound.port() != 0 && addrs.first() == Some(bound)),
            _ => false,
        };
        if unchanged {
            continue;
        }
        let bound = socket::bind(name, &spec, unix_mode).map_err(PrepareError::Bind)?;
        rebound.push((index, bound));
    }
    Ok(Opened { exe, rebound })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_binary_counts_against_the_program() {
        let executable = PrepareError::from(spawn::ExecutableError::NotExecutable {
            path: PathBuf::from("/bin/svc"),
        });
        assert!(executable.counts());
        assert_eq!(executable.to_string(), "/bin/svc is not executable");
        let unknown = PrepareError::NoListener {
            name: "htp".into(),
            listeners: vec!["http".into(), "dns".into()],
        };
        assert!(!unknown.counts());
        assert_eq!(
            unknown.to_string(),
            "no listener named \"htp\"; the listeners are http, dns"
        );
        let slow = PrepareError::TimedOut(PREPARE_TIMEOUT);
        assert!(!slow.counts());
        assert_eq!(
            slow.to_string(),
            "opening the binary and binding the listeners took longer than 10 s"
        );
    }
}
