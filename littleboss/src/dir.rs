//! Where control sockets live, and the checks that keep other users out of it.
//!
//! The directory is `$LITTLEBOSS_DIR` if set, else `$XDG_RUNTIME_DIR/littleboss`, else
//! `$TMPDIR/littleboss-UID` (`/tmp` when `TMPDIR` is unset). It must be a real directory
//! (not a symlink, however its path is spelled: `/link/` and `/link/.` are `/link`),
//! owned by the user, with no permissions for group or others: the control socket in it
//! can reload the service with any binary. Every directory above it, up to `/`, must be
//! owned by the user or root and not writable by group or others, except a root-owned
//! sticky one such as `/tmp` (the rule OpenSSH applies to its keys): whoever can write
//! a parent can replace the directory under it.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode};

/// The directory that holds `<name>.sock`, from the environment.
///
/// A relative `LITTLEBOSS_DIR` is refused: it would name another directory from each
/// working directory, so a `stop` run elsewhere would not find the supervisor it
/// meant. A relative `XDG_RUNTIME_DIR` is ignored, as its specification says, and a
/// relative `TMPDIR` is refused like `LITTLEBOSS_DIR`.
pub(crate) fn control_dir() -> Result<PathBuf, DirError> {
    let uid = rustix::process::geteuid().as_raw();
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let absolute = |var: &'static str, dir: PathBuf| match dir.is_absolute() {
        true => Ok(dir),
        false => Err(DirError::Relative { var, dir }),
    };
    if let Some(dir) = var("LITTLEBOSS_DIR") {
        return absolute("LITTLEBOSS_DIR", PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if dir.is_absolute() {
            return Ok(dir.join("littleboss"));
        }
    }
    let tmp = absolute(
        "TMPDIR",
        PathBuf::from(var("TMPDIR").unwrap_or_else(|| OsString::from("/tmp"))),
    )?;
    Ok(tmp.join(format!("littleboss-{uid}")))
}

/// Why the control directory cannot be used: its name in the environment, or a
/// directory above it that another user could change. Each text names the directory
/// and says what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirError {
    /// `var` names a relative path.
    #[error(
        "{var}={:?} is a relative path, which would name a different directory from each working directory; set it to an absolute path",
        .dir.display().to_string()
    )]
    Relative { var: &'static str, dir: PathBuf },
    /// A symlink on the way to `dir`, at `link`, belongs to another user.
    #[error(
        "control directory {}: the symlink {} on its path is owned by uid {owner}, who could point it elsewhere; use a path that only you or root can change",
        .dir.display(),
        .link.display()
    )]
    ForeignSymlink {
        dir: PathBuf,
        link: PathBuf,
        owner: u32,
    },
    /// A directory above `dir` cannot be looked at.
    #[error("control directory {}: its parent {}: {source}", .dir.display(), .parent.display())]
    Parent {
        dir: PathBuf,
        parent: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A directory above `dir` could be changed by another user.
    #[error(
        "control directory {}: its parent {} {why}; another user could replace the control directory (use a directory whose parents only you or root can change)",
        .dir.display(),
        .parent.display()
    )]
    UnsafeParent {
        dir: PathBuf,
        parent: PathBuf,
        #[source]
        why: ParentProblem,
    },
}

/// What makes a directory above the control directory unsafe (its text follows the
/// directory's name).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParentProblem {
    #[error("is owned by uid {owner}, neither this user (uid {uid}) nor root")]
    Owner { owner: u32, uid: u32 },
    #[error("has mode {:04o}: writable by group or others", .mode & 0o7777)]
    Writable { mode: u32 },
}

/// Checks `dir` as the supervisor needs it, creating it (mode 0700) if it is missing.
pub(crate) fn prepare(dir: &Path) -> io::Result<()> {
    // The parents first, so that nothing is created under one that others can change.
    if let Some(spelled) = normalized(dir) {
        let uid = rustix::process::geteuid().as_raw();
        check_parents(dir, &spelled, uid)
            .map_err(|why| io::Error::new(io::ErrorKind::PermissionDenied, why))?;
    }
    match rustix::fs::mkdir(dir, Mode::RWXU) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {}
        Err(e) => {
            let kind = io::Error::from(e).kind();
            return Err(io::Error::new(
                kind,
                format!(
                    "cannot create the control directory {}: {kind} (set LITTLEBOSS_DIR to a directory you own)",
                    dir.display()
                ),
            ));
        }
    }
    check(dir)
}

/// Refuses `dir` unless it is a directory, not a symlink, owned by this user, with no
/// permissions for group or others, under parents that only this user or root can
/// change ([`check_parents`]).
pub(crate) fn check(dir: &Path) -> io::Result<()> {
    let shown = dir.display();
    let refuse = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    // `/link/` and `/link/.` name what `/link` points to; lstat must see `/link` itself.
    let Some(spelled) = normalized(dir) else {
        return refuse(format!(
            "control directory {shown} ends in `..`; name the directory itself"
        ));
    };
    let stat = rustix::fs::lstat(&spelled).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("control directory {shown}: {}", io::Error::from(e).kind()),
        )
    })?;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    if file_type == FileType::Symlink {
        return refuse(format!(
            "control directory {shown} is a symlink; refusing it (use a real directory, mode 0700)"
        ));
    }
    if file_type != FileType::Directory {
        return refuse(format!("control directory {shown} is not a directory"));
    }
    let uid = rustix::process::geteuid().as_raw();
    if stat.st_uid != uid {
        return refuse(format!(
            "control directory {shown} is owned by uid {}, not by this user (uid {uid}); use a directory of your own, e.g. LITTLEBOSS_DIR=$HOME/.littleboss",
            stat.st_uid
        ));
    }
    let mode = stat.st_mode & 0o777;
    if mode & 0o077 != 0 {
        return refuse(format!(
            "control directory {shown} has mode {mode:04o}; others could reach the control socket (fix: chmod 700 {shown})"
        ));
    }
    check_parents(dir, &spelled, uid)
        .map_err(|why| io::Error::new(io::ErrorKind::PermissionDenied, why))
}

/// `dir` without trailing slashes and `.` components (`None` if it ends in `..`, which
/// names no directory of its own).
fn normalized(dir: &Path) -> Option<PathBuf> {
    let path: PathBuf = dir.components().collect();
    match path.components().next_back() {
        Some(Component::ParentDir) => None,
        None => Some(PathBuf::from(".")),
        Some(_) => Some(path),
    }
}

/// Checks each directory above `spelled` (the control directory, as normalized), up to
/// `/`: as the kernel resolves it, each must be owned by `uid` or root, and not
/// writable by group or others unless it is root's and sticky; and a symlink on the way
/// as it is spelled must be owned by `uid` or root (its owner can point it elsewhere).
fn check_parents(dir: &Path, spelled: &Path, uid: u32) -> Result<(), DirError> {
    let parent = match spelled.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut prefix = PathBuf::new();
    for component in parent.components() {
        if component == Component::ParentDir {
            break;
        }
        prefix.push(component);
        let Ok(stat) = rustix::fs::lstat(&prefix) else {
            break;
        };
        let owner = stat.st_uid;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink && owner != uid && owner != 0
        {
            return Err(DirError::ForeignSymlink {
                dir: dir.to_path_buf(),
                link: prefix,
                owner,
            });
        }
    }
    let unreadable = |parent: &Path, source: io::Error| DirError::Parent {
        dir: dir.to_path_buf(),
        parent: parent.to_path_buf(),
        source,
    };
    let real = std::fs::canonicalize(&parent).map_err(|e| unreadable(&parent, e))?;
    for ancestor in real.ancestors() {
        let stat = rustix::fs::stat(ancestor).map_err(|e| unreadable(ancestor, e.into()))?;
        if let Err(why) = parent_allowed(stat.st_uid, crate::sys::mode_bits(stat.st_mode), uid) {
            return Err(DirError::UnsafeParent {
                dir: dir.to_path_buf(),
                parent: ancestor.to_path_buf(),
                why,
            });
        }
    }
    Ok(())
}

/// Whether a directory above the control directory, of owner `owner` and `mode`, is
/// safe for user `uid`; if not, why.
fn parent_allowed(owner: u32, mode: u32, uid: u32) -> Result<(), ParentProblem> {
    if owner != uid && owner != 0 {
        return Err(ParentProblem::Owner { owner, uid });
    }
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(owner == 0 && sticky) {
        return Err(ParentProblem::Writable { mode });
    }
    Ok(())
}

/// `<dir>/<name>.sock`.
pub(crate) fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// `<dir>/<name>.lock`: held (flock) by the live supervisor for its whole life.
pub(crate) fn lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn accepts_private_and_refuses_open_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lb");
        prepare(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        let err = check(&dir).unwrap_err().to_string();
        assert!(err.contains("chmod 700"), "{err}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = check(&link).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
    }

    /// However the path to a symlink is spelled, it is the symlink that is checked.
    #[test]
    fn a_symlink_is_refused_however_it_is_spelled() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lb");
        prepare(&dir).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let base = link.display().to_string();
        for spelled in [
            format!("{base}/"),
            format!("{base}/."),
            format!("{base}//./"),
        ] {
            let err = check(Path::new(&spelled)).unwrap_err().to_string();
            assert!(err.contains("is a symlink"), "{spelled}: {err}");
        }
        let err = check(Path::new(&format!("{base}/..")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ends in `..`"), "{err}");
        check(Path::new(&format!("{}/./", dir.display()))).unwrap();
    }

    /// The rule for a parent, as a table: (owner, mode, allowed).
    #[test]
    fn parents_owned_by_the_user_or_root_and_not_writable_by_others() {
        let uid = 1000;
        let cases = [
            (1000, 0o700, true),
            (1000, 0o755, true),
            (0, 0o755, true),
            (0, 0o1777, true),     // /tmp
            (0, 0o777, false),     // writable by all, not sticky
            (0, 0o775, false),     // writable by root's group
            (1000, 0o1777, false), // sticky, but not root's
            (1000, 0o770, false),
            (2000, 0o755, false),
            (2000, 0o1777, false),
        ];
        for (owner, mode, allowed) in cases {
            let got = parent_allowed(owner, mode, uid);
            assert_eq!(got.is_ok(), allowed, "owner {owner} mode {mode:o}: {got:?}");
        }
        assert_eq!(
            parent_allowed(0, 0o777, uid).unwrap_err().to_string(),
            "has mode 0777: writable by group or others"
        );
        assert_eq!(
            parent_allowed(2000, 0o755, uid).unwrap_err().to_string(),
            "is owned by uid 2000, neither this user (uid 1000) nor root"
        );
        assert!(parent_allowed(0, 0o777, 0).is_err());
    }

    /// Each refusal reads as the text it has always been.
    #[test]
    fn refusals_name_the_directory_and_what_to_do() {
        let relative = DirError::Relative {
            var: "LITTLEBOSS_DIR",
            dir: PathBuf::from("run/lb"),
        };
        assert_eq!(
            relative.to_string(),
            "LITTLEBOSS_DIR=\"run/lb\" is a relative path, which would name a different directory from each working directory; set it to an absolute path"
        );
        let symlink = DirError::ForeignSymlink {
            dir: PathBuf::from("/srv/lb"),
            link: PathBuf::from("/srv"),
            owner: 2000,
        };
        assert_eq!(
            symlink.to_string(),
            "control directory /srv/lb: the symlink /srv on its path is owned by uid 2000, who could point it elsewhere; use a path that only you or root can change"
        );
        let open = DirError::UnsafeParent {
            dir: PathBuf::from("/srv/lb"),
            parent: PathBuf::from("/srv"),
            why: ParentProblem::Writable { mode: 0o40777 },
        };
        assert_eq!(
            open.to_string(),
            "control directory /srv/lb: its parent /srv has mode 0777: writable by group or others; another user could replace the control directory (use a directory whose parents only you or root can change)"
        );
    }

    #[test]
    fn a_parent_writable_by_others_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let dir = open.join("lb");
        let err = prepare(&dir).unwrap_err().to_string();
        let named = format!("its parent {} has mode 0777", open.display());
        assert!(err.contains(&named), "{err}");
    }
}
