//! Running children as another user: the supervisor keeps its privileges (it bound the
//! listeners), each child drops to the configured user between fork and exec.

use std::ffi::OsString;

use rustix::process::{Gid, Uid};
use uzers::os::unix::UserExt;

/// The identity a child takes on.
#[derive(Clone, Debug)]
pub(crate) struct RunAs {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
    pub home: OsString,
}

/// Why the children cannot run as the user the program declares.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UserError {
    #[error("cannot run the child as user {0:?}: no such user")]
    NoSuchUser(String),
    #[error("cannot run the child as group {0:?}: no such group")]
    NoSuchGroup(String),
    #[error(
        "cannot run the child as user {user:?}: the supervisor runs as uid {euid}, not root (start it as root, or drop the user option)"
    )]
    NotRoot { user: String, euid: u32 },
}

/// Looks up `user` (and `group`): `None` when the child runs as the supervisor does.
///
/// A supervisor that is not root can only run its children as itself.
pub(crate) fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<RunAs>, UserError> {
    // A group without a user is refused when the program starts (`dispatch::validate`).
    let Some(user) = user else {
        return Ok(None);
    };
    let entry =
        uzers::get_user_by_name(user).ok_or_else(|| UserError::NoSuchUser(user.to_string()))?;
    let gid = match group {
        Some(group) => uzers::get_group_by_name(group)
            .ok_or_else(|| UserError::NoSuchGroup(group.to_string()))?
            .gid(),
        None => entry.primary_group_id(),
    };
    let euid = rustix::process::geteuid();
    if !euid.is_root() {
        if entry.uid() == euid.as_raw() && gid == rustix::process::getegid().as_raw() {
            return Ok(None);
        }
        return Err(UserError::NotRoot {
            user: user.to_string(),
            euid: euid.as_raw(),
        });
    }
    let mut groups: Vec<Gid> = uzers::get_user_groups(user, gid)
        .unwrap_or_default()
        .iter()
        .map(|g| Gid::from_raw(g.gid()))
        .collect();
    if groups.is_empty() {
        groups.push(Gid::from_raw(gid));
    }
    Ok(Some(RunAs {
        name: user.to_string(),
        uid: Uid::from_raw(entry.uid()),
        gid: Gid::from_raw(gid),
        groups,
        home: entry.home_dir().as_os_str().to_os_string(),
    }))
}

/// In the forked child, before exec: supplementary groups, then the group, then the
/// user (in that order: after `setuid` the others are no longer allowed); see
/// [`sys::switch_user`](crate::sys::switch_user).
pub(crate) fn switch(run_as: &RunAs) -> std::io::Result<()> {
    crate::sys::switch_user(&run_as.groups, run_as.gid, run_as.uid)
}
