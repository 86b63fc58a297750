//! Whether a file is a complete executable: dev mode starts a build only once it is.
//!
//! A builder that writes its output in place, in parts, closes the file between them,
//! and a close says nothing of whether the file is whole. Its format does: an ELF file
//! (Linux, FreeBSD) names where its program headers, its loaded segments and its
//! section headers lie, and a Mach-O file (macOS) where its load commands and segments
//! lie; a file shorter than any of these is not complete. A script (`#!`) is complete
//! as soon as it has its first line. Anything else is not an executable this system
//! would run, and is not started.

/// The most bytes of a file's start that are read to judge it.
pub(crate) const HEAD: usize = 64 * 1024;

/// Whether a file of `len` bytes that starts with `head` (its first bytes, up to
/// [`HEAD`]) is a complete executable.
pub(crate) fn is_complete(head: &[u8], len: u64) -> bool {
    if head.starts_with(b"#!") {
        return head.contains(&b'\n');
    }
    if head.starts_with(b"\x7fELF") {
        return elf_complete(head, len).unwrap_or(false);
    }
    if head.len() >= 4 {
        let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if magic == MACHO_64 {
            return macho_complete(head, len).unwrap_or(false);
        }
        if u32::from_be_bytes([head[0], head[1], head[2], head[3]]) == FAT {
            return fat_complete(head, len).unwrap_or(false);
        }
    }
    false
}

/// Reads the file at `path`: whether it is a complete executable.
pub(crate) fn file_is_complete(path: &std::path::Path) -> bool {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    let mut head = Vec::with_capacity(HEAD);
    if file.take(HEAD as u64).read_to_end(&mut head).is_err() {
        return false;
    }
    is_complete(&head, len)
}

const MACHO_64: u32 = 0xfeed_facf;
const FAT: u32 = 0xcafe_babe;
const LC_SEGMENT_64: u64 = 0x19;
const PT_LOAD: u64 = 1;

/// Reads integers of one byte order out of `bytes`.
struct Reader<'a> {
    bytes: &'a [u8],
    big: bool,
}

impl Reader<'_> {
    fn take<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn u16(&self, at: usize) -> Option<u64> {
        let b = self.take::<2>(at)?;
        Some(u64::from(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }))
    }

    fn u32(&self, at: usize) -> Option<u64> {
        let b = self.take::<4>(at)?;
        Some(u64::from(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }))
    }

    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.take::<8>(at)?;
        Some(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
}

/// `at + count * size`, the end of a table, if it does not overflow.
fn end_of(at: u64, count: u64, size: u64) -> Option<u64> {
    at.checked_add(count.checked_mul(size)?)
}

fn elf_complete(head: &[u8], len: u64) -> Option<bool> {
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return Some(false),
    };
    let big = match head.get(5)? {
        1 => false,
        2 => true,
        _ => return Some(false),
    };
    let r = Reader { bytes: head, big };
    let (phoff, shoff, phentsize, phnum, shentsize, shnum) = if wide {
        (
            r.u64(0x20)?,
            r.u64(0x28)?,
            r.u16(0x36)?,
            r.u16(0x38)?,
            r.u16(0x3a)?,
            r.u16(0x3c)?,
        )
    } else {
        (
            r.u32(0x1c)?,
            r.u32(0x20)?,
            r.u16(0x2a)?,
            r.u16(0x2c)?,
            r.u16(0x2e)?,
            r.u16(0x30)?,
        )
    };
    let mut end = end_of(phoff, phnum, phentsize)?.max(end_of(shoff, shnum, shentsize)?);
    // Each loaded segment's bytes in the file (the program headers are in `head` when
    // they are near its start, as linkers put them; else the tables above suffice).
    for i in 0..phnum {
        let at = usize::try_from(end_of(phoff, i, phentsize)?).ok()?;
        if r.u32(at).is_none() {
            break;
        }
        if r.u32(at)? != PT_LOAD {
            continue;
        }
        let (offset, filesz) = if wide {
            (r.u64(at + 8)?, r.u64(at + 32)?)
        } else {
            (r.u32(at + 4)?, r.u32(at + 16)?)
        };
        end = end.max(offset.checked_add(filesz)?);
    }
    Some(end <= len)
}

fn macho_complete(head: &[u8], len: u64) -> Option<bool> {
    let r = Reader {
        bytes: head,
        big: false,
    };
    let (ncmds, sizeofcmds) = (r.u32(16)?, r.u32(20)?);
    let mut end = 32u64.checked_add(sizeofcmds)?;
    let mut at = 32usize;
    for _ in 0..ncmds {
        let (cmd, cmdsize) = (r.u32(at)?, r.u32(at + 4)?);
        if cmd == LC_SEGMENT_64 {
            let (fileoff, filesize) = (r.u64(at + 40)?, r.u64(at + 48)?);
            end = end.max(fileoff.checked_add(filesize)?);
        }
        if cmdsize == 0 {
            return Some(false);
        }
        at = at.checked_add(usize::try_from(cmdsize).ok()?)?;
    }
    Some(end <= len)
}

fn fat_complete(head: &[u8], len: u64) -> Option<bool> {
    let r = Reader {
        bytes: head,
        big: true,
    };
    let count = r.u32(4)?;
    let mut end = end_of(8, count, 20)?;
    for i in 0..count {
        let at = usize::try_from(end_of(8, i, 20)?).ok()?;
        end = end.max(r.u32(at + 8)?.checked_add(r.u32(at + 12)?)?);
    }
    Some(end <= len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(bytes: &[u8]) -> &[u8] {
        &bytes[..bytes.len().min(HEAD)]
    }

    #[test]
    fn this_test_binary_is_complete_and_any_cut_of_it_is_not() {
        let exe = std::fs::read(std::env::current_exe().expect("the test binary"))
            .expect("read the test binary");
        let len = exe.len() as u64;
        assert!(is_complete(head_of(&exe), len));
        for cut in [len / 10, len / 2, len - 1] {
            let part = &exe[..cut as usize];
            assert!(!is_complete(head_of(part), cut), "cut at {cut} of {len}");
        }
    }

    #[test]
    fn scripts_need_their_first_line_and_other_files_are_not_executables() {
        assert!(is_complete(b"#!/bin/sh\necho hi\n", 18));
        assert!(!is_complete(b"#!/bin/s", 8));
        assert!(!is_complete(b"hello, world\n", 13));
        assert!(!is_complete(b"", 0));
        assert!(!is_complete(b"\x7fELF", 4));
        assert!(!is_complete(b"\x7fELF\x02\x01\x01", 7));
    }

    #[test]
    fn a_mach_o_file_is_complete_once_its_segments_are_there() {
        // A 64-bit Mach-O header with one LC_SEGMENT_64 of 100 bytes at offset 4096.
        let mut head = Vec::new();
        head.extend(MACHO_64.to_le_bytes());
        head.extend([0u8; 12]);
        head.extend(1u32.to_le_bytes()); // ncmds
        head.extend(72u32.to_le_bytes()); // sizeofcmds
        head.extend([0u8; 8]);
        head.extend((LC_SEGMENT_64 as u32).to_le_bytes());
        head.extend(72u32.to_le_bytes());
        head.extend([0u8; 32]);
        head.extend(4096u64.to_le_bytes()); // fileoff
        head.extend(100u64.to_le_bytes()); // filesize
        head.extend([0u8; 16]);
        assert!(is_complete(&head, 4196));
        assert!(!is_complete(&head, 4195));
    }

    #[test]
    fn absurd_headers_are_not_complete_and_do_not_panic() {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(64, 0xff);
        assert!(!is_complete(&elf, 64));
        let mut fat = FAT.to_be_bytes().to_vec();
        fat.extend(u32::MAX.to_be_bytes());
        assert!(!is_complete(&fat, 8));
        let mut macho = MACHO_64.to_le_bytes().to_vec();
        macho.resize(32, 0xff);
        assert!(!is_complete(&macho, 32));
    }
}
