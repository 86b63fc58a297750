//! Where control sockets live, and the checks that keep other users out of it.
//!
//! The directory is `$LITTLEBOSS_DIR` if set, else `$XDG_RUNTIME_DIR/littleboss`, else
//! `$TMPDIR/littleboss-UID` (`/tmp` when `TMPDIR` is unset). It must be a real directory
//! (not a symlink), owned by the user, with no permissions for group or others: the
//! control socket in it can reload the service with any binary.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};

/// The directory that holds `<name>.sock`, from the environment.
pub(crate) fn control_dir() -> PathBuf {
    let uid = rustix::process::geteuid().as_raw();
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("LITTLEBOSS_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("littleboss");
    }
    let tmp = var("TMPDIR").unwrap_or_else(|| OsString::from("/tmp"));
    PathBuf::from(tmp).join(format!("littleboss-{uid}"))
}

/// Checks `dir` as the supervisor needs it, creating it (mode 0700) if it is missing.
pub(crate) fn prepare(dir: &Path) -> io::Result<()> {
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
/// permissions for group or others.
pub(crate) fn check(dir: &Path) -> io::Result<()> {
    let shown = dir.display();
    let stat = rustix::fs::lstat(dir).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("control directory {shown}: {}", io::Error::from(e).kind()),
        )
    })?;
    let refuse = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
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
}
