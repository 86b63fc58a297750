//! Programs that are scripts (`#!`): the kernel runs their interpreter with the path
//! the supervisor executed, `/proc/self/fd/N`, and the interpreter opens that path to
//! read the script. The executable's fd is close-on-exec, so for a script it is kept
//! open across exec (in the child only): the interpreter then finds it as its own fd N.
//! A binary needs no such fd, and gets none.

use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Whether the file behind `exe` (an `O_PATH` fd, which cannot be read itself) starts
/// with `#!`. A file that cannot be read is no script the kernel could run either.
pub(crate) fn is_script(exe: BorrowedFd<'_>) -> bool {
    let Ok(mut file) = std::fs::File::open(format!("/proc/self/fd/{}", exe.as_raw_fd())) else {
        return false;
    };
    let mut magic = [0u8; 2];
    file.read_exact(&mut magic).is_ok() && magic == *b"#!"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn scripts_are_told_from_binaries() {
        let tmp = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], bool); 4] = [
            ("script", b"#!/bin/sh\necho hi\n", true),
            ("elf", b"\x7fELF\x02\x01\x01", false),
            ("short", b"#", false),
            ("empty", b"", false),
        ];
        for (name, bytes, script) in cases {
            let path = tmp.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            let fd = super::super::spawn::open_executable(&path).unwrap();
            assert_eq!(is_script(fd.as_fd()), script, "{name}");
        }
    }
}
