//! A reload's I/O before its child starts: opening the new executable and binding the
//! listeners the reload moves. Binding may resolve a host name or probe a stale unix
//! socket, both blocking calls, so it runs on a thread of its own, bounded by a
//! timeout, and the supervisor's loop goes on meanwhile.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::socket::{self, Bound, BoundAddr};
use crate::spec::ListenerSpec;

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

/// Why it failed, and whether that counts as a failure of the program (its binary).
pub(crate) type Failure = (String, bool);

/// Opens `path` (or takes `exe`, the file a client passed as itself, which `path`
/// then only names) and binds what `overrides` moves, off the loop.
pub(crate) async fn open(
    path: PathBuf,
    exe: Option<OwnedFd>,
    listeners: Vec<ListenerRecord>,
    overrides: Vec<(String, String)>,
    unix_mode: Option<u32>,
) -> Result<Opened, Failure> {
    let work = tokio::task::spawn_blocking(move || {
        open_blocking(&path, exe, &listeners, &overrides, unix_mode)
    });
    match tokio::time::timeout(PREPARE_TIMEOUT, work).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err((format!("preparing the reload failed: {e}"), false)),
        Err(_) => Err((
            format!(
                "opening the binary and binding the listeners took longer than {} s",
                PREPARE_TIMEOUT.as_secs()
            ),
            false,
        )),
    }
}

fn open_blocking(
    path: &std::path::Path,
    exe: Option<OwnedFd>,
    listeners: &[ListenerRecord],
    overrides: &[(String, String)],
    unix_mode: Option<u32>,
) -> Result<Opened, Failure> {
    let exe = match exe {
        Some(fd) => spawn::checked_executable(fd, path),
        None => spawn::open_executable(path),
    }
    .map_err(|e| (e, true))?;
    let mut rebound: Vec<(usize, Option<Bound>)> = Vec::new();
    for (i, (name, address)) in overrides.iter().enumerate() {
        // The last flag for a listener wins.
        if overrides[i + 1..].iter().any(|(later, _)| later == name) {
            continue;
        }
        let Some(index) = listeners.iter().position(|l| &l.name == name) else {
            let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            return Err((
                format!(
                    "no listener named {name:?}; the listeners are {}",
                    names.join(", ")
                ),
                false,
            ));
        };
        let record = &listeners[index];
        let spec = ListenerSpec::with_address(record.network, address)
            .map_err(|e| (format!("flag --{name}: {e}"), false))?;
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
        let bound = socket::bind(name, &spec, unix_mode).map_err(|e| (e.to_string(), false))?;
        rebound.push((index, bound));
    }
    Ok(Opened { exe, rebound })
}
