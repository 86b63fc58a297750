//! A typed state: a format version the program chooses, 4 bytes little-endian, then
//! the value in postcard 1.x. The version is the program's promise about the layout:
//! a release that changes its type bumps it, and a process that reads another version
//! gets an error naming both instead of a value misread.

use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sealed::Writer;
use crate::error::{Error, StateProblem};

/// How many bytes the encoder gathers before each write into the state's file.
const CHUNK: usize = 64 * 1024;

/// A sealed file holding `version` and `value`, and its size; the value goes straight
/// into the file, never whole in memory.
pub(crate) fn write<T: Serialize + ?Sized>(
    version: u32,
    value: &T,
) -> Result<(OwnedFd, u64), Error> {
    let mut file = Writer::new().map_err(|e| Error::io("creating the state's file", e))?;
    let mut sink = Recording {
        file: &mut file,
        failed: None,
    };
    let encoded = {
        let mut out = BufWriter::with_capacity(CHUNK, &mut sink);
        let head = out.write_all(&version.to_le_bytes());
        let body = head
            .map_err(|_| postcard::Error::SerializeBufferFull)
            .and_then(|()| postcard::to_io(value, &mut out).map(|_| ()));
        let flushed = out.flush();
        body.and_then(|()| flushed.map_err(|_| postcard::Error::SerializeBufferFull))
    };
    let failed = sink.failed.take();
    if let Some(size) = file.over_limit() {
        return Err(StateProblem::TooLarge { size }.into());
    }
    if let Some(e) = failed {
        return Err(Error::io("writing the state into its file", e));
    }
    if let Err(e) = encoded {
        return Err(StateProblem::Encode {
            reason: e.to_string(),
        }
        .into());
    }
    file.finish()
        .map_err(|e| Error::io("sealing the state's file", e))
}

/// The format version a state says, if it holds one (4 bytes or more).
pub(crate) fn version_of(bytes: &[u8]) -> Option<u32> {
    let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(head))
}

/// The value of a state of format version `wanted`.
pub(crate) fn read<T: DeserializeOwned>(bytes: &[u8], wanted: u32) -> Result<T, StateProblem> {
    let Some(found) = version_of(bytes) else {
        return Err(StateProblem::Decode {
            reason: format!(
                "it holds {} bytes, fewer than the 4 of a format version",
                bytes.len()
            ),
        });
    };
    if found != wanted {
        return Err(StateProblem::Version { found, wanted });
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(&bytes[4..]).map_err(|e| StateProblem::Decode {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(StateProblem::Decode {
            reason: format!("{} bytes follow the value", rest.len()),
        });
    }
    Ok(value)
}

/// The state's file, keeping the first error of a write: the encoder only says that
/// writing failed, not why.
struct Recording<'a> {
    file: &'a mut Writer,
    failed: Option<io::Error>,
}

impl Write for Recording<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf).map_err(|e| {
            let kind = e.kind();
            self.failed.get_or_insert(e);
            io::Error::from(kind)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_mismatch_names_both() {
        let mut bytes = 3u32.to_le_bytes().to_vec();
        bytes.extend(postcard::to_allocvec(&7u64).unwrap());
        assert_eq!(read::<u64>(&bytes, 3), Ok(7));
        assert_eq!(
            read::<u64>(&bytes, 4).unwrap_err().to_string(),
            "the state is format version 3; this program reads version 4"
        );
        assert_eq!(
            read::<u64>(&bytes[..2], 3).unwrap_err().to_string(),
            "the state does not decode as the type asked for: it holds 2 bytes, fewer than the 4 of a format version"
        );
        bytes.push(0);
        assert_eq!(
            read::<u64>(&bytes, 3).unwrap_err().to_string(),
            "the state does not decode as the type asked for: 1 bytes follow the value"
        );
        assert_eq!(version_of(&bytes), Some(3));
        assert_eq!(version_of(&[1, 2]), None);
    }

    #[test]
    fn a_value_is_written_into_a_sealed_file() {
        let value: Vec<String> = (0..10_000).map(|i| format!("entry {i}")).collect();
        let (fd, size) = write(9, &value).unwrap();
        let contents = super::super::sealed::open(fd, size).unwrap();
        assert_eq!(read::<Vec<String>>(contents.as_slice(), 9), Ok(value));
    }
}
