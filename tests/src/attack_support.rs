//! Support for the tests that attack a supervisor (`tests/tests/child_channel.rs`,
//! `control_socket.rs`, `faults.rs`, `misuse.rs`) and their helper programs
//! (`src/bin/lb-*.rs`).
//!
//! - [`wire`]: control-socket frames and child-channel messages encoded by hand from
//!   `PROTOCOL.md` (not with the crate's own types, so the document is what is tested),
//!   and a decoder for the supervisor's responses.
//! - [`raw`]: a control client that sends any bytes and reports what came back.
//! - [`Serving`]: what a supervisor serves before an attack, and the check that it
//!   still serves the same way after it.
//! - `/proc` readings: memory ([`vm_kib`]), open fds ([`fd_count`]).
//!
//! The helper programs serve HTTP with
//! [`serve_greeting`](crate::serve::serve_greeting).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{Supervisor, get, status_field};

/// Messages of the littleboss wire protocol, version 1, written byte by byte.
///
/// postcard, as `PROTOCOL.md` describes it: unsigned integers are LEB128 varints,
/// signed ones zigzag varints, a `bool` one byte, an enum its variant index (varint)
/// then its fields, a string or byte string its length then its bytes, an `Option` `0`
/// or `1` then the value, a sequence or map its length then its items.
pub mod wire {
    use std::collections::BTreeMap;

    /// The protocol version of this release.
    pub const VERSION: u16 = 1;

    /// The largest control frame the supervisor accepts.
    pub const MAX_FRAME: usize = 64 * 1024;

    /// Appends `value` as a LEB128 varint.
    pub fn varint(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// Appends a byte string (or a UTF-8 string's bytes): length, then the bytes.
    pub fn bytes(out: &mut Vec<u8>, value: &[u8]) {
        varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }

    /// `[version: u16 LE][body]`.
    pub fn message(version: u16, body: &[u8]) -> Vec<u8> {
        let mut out = version.to_le_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    /// `[length: u32 LE][message]`: a control-socket frame.
    pub fn frame(message: &[u8]) -> Vec<u8> {
        let mut out = (message.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(message);
        out
    }

    /// A framed `Status` request (variant 0, no fields).
    pub fn status_request() -> Vec<u8> {
        frame(&message(VERSION, &[0]))
    }

    /// A framed `Stop` request (variant 1, no fields).
    pub fn stop_request() -> Vec<u8> {
        frame(&message(VERSION, &[1]))
    }

    /// A framed `Reload` request (variant 2): `path: bytes, args: Option<[bytes]>,
    /// listeners: [(string, string)]`.
    pub fn reload_request(
        path: &[u8],
        args: Option<&[&[u8]]>,
        listeners: &[(&str, &str)],
    ) -> Vec<u8> {
        frame(&message(VERSION, &reload_body(2, path, args, listeners)))
    }

    /// A framed protocol-2 `Upgrade` request (variant 3) of `path`, as a reload's.
    pub fn upgrade_request(path: &[u8]) -> Vec<u8> {
        frame(&message(2, &reload_body(3, path, None, &[])))
    }

    fn reload_body(
        variant: u64,
        path: &[u8],
        args: Option<&[&[u8]]>,
        listeners: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut body = Vec::new();
        varint(&mut body, variant);
        bytes(&mut body, path);
        match args {
            None => body.push(0),
            Some(args) => {
                body.push(1);
                varint(&mut body, args.len() as u64);
                for arg in args {
                    bytes(&mut body, arg);
                }
            }
        }
        varint(&mut body, listeners.len() as u64);
        for (name, address) in listeners {
            bytes(&mut body, name.as_bytes());
            bytes(&mut body, address.as_bytes());
        }
        body
    }

    /// What a child says first on its channel.
    #[derive(Clone, Debug)]
    pub struct Hello<'a> {
        /// The service name.
        pub name: &'a str,
        /// Its pid.
        pub pid: u32,
        /// Whether it will call `ready()`.
        pub calls_ready: bool,
        /// Its settle time.
        pub settle_ms: u64,
        /// How long it may take to call `ready()`.
        pub ready_timeout_ms: u64,
        /// How long it may take to wind down.
        pub lameduck_ms: u64,
    }

    /// The body of `ChildMsg::Hello` (variant 0), without the version.
    pub fn hello_body(hello: &Hello<'_>) -> Vec<u8> {
        let mut body = Vec::new();
        varint(&mut body, 0);
        bytes(&mut body, hello.name.as_bytes());
        varint(&mut body, u64::from(hello.pid));
        body.push(u8::from(hello.calls_ready));
        varint(&mut body, hello.settle_ms);
        varint(&mut body, hello.ready_timeout_ms);
        varint(&mut body, hello.lameduck_ms);
        body
    }

    /// The body of `ChildMsg::Ready` (variant 1), without the version.
    pub fn ready_body() -> Vec<u8> {
        vec![1]
    }

    /// The supervisor's `Status` response, field by field.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Status {
        pub name: String,
        pub protocol: u16,
        pub supervisor_pid: u32,
        pub supervisor_started: String,
        pub child_pid: Option<u32>,
        pub child_path: Option<String>,
        pub child_args: Vec<String>,
        pub child_started: Option<String>,
        pub previous_path: Option<String>,
        pub reloads: u64,
        pub failures: u64,
        pub restarts: u64,
        pub state: String,
        pub listeners: BTreeMap<String, String>,
    }

    /// A response of the supervisor (`Response` in `PROTOCOL.md`).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Response {
        /// Variant 0.
        Status(Box<Status>),
        /// Variant 1.
        Stopped { code: i32 },
        /// Variant 2.
        Reloaded {
            old_pid: Option<u32>,
            new_pid: u32,
            ms: u64,
        },
        /// Variant 3.
        Failed { reason: String },
    }

    impl Response {
        /// The reason of a `Failed` response, or `None`.
        pub fn failed(&self) -> Option<&str> {
            match self {
                Response::Failed { reason } => Some(reason),
                _ => None,
            }
        }
    }

    /// Reads postcard values from a byte slice.
    struct Reader<'a> {
        bytes: &'a [u8],
    }

    impl<'a> Reader<'a> {
        fn byte(&mut self) -> Result<u8, String> {
            let (&first, rest) = self.bytes.split_first().ok_or("message ends early")?;
            self.bytes = rest;
            Ok(first)
        }

        fn varint(&mut self) -> Result<u64, String> {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = self.byte()?;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return Ok(value);
                }
            }
            Err("varint longer than 10 bytes".into())
        }

        fn u32(&mut self) -> Result<u32, String> {
            u32::try_from(self.varint()?).map_err(|e| e.to_string())
        }

        fn i32(&mut self) -> Result<i32, String> {
            let zigzag = self.u32()?;
            Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
        }

        fn raw(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.bytes.len() < n {
                return Err(format!("{n} bytes wanted, {} left", self.bytes.len()));
            }
            let (head, rest) = self.bytes.split_at(n);
            self.bytes = rest;
            Ok(head)
        }

        fn string(&mut self) -> Result<String, String> {
            let len = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
            let raw = self.raw(len)?;
            String::from_utf8(raw.to_vec()).map_err(|e| e.to_string())
        }

        fn option<T>(
            &mut self,
            read: impl FnOnce(&mut Self) -> Result<T, String>,
        ) -> Result<Option<T>, String> {
            match self.byte()? {
                0 => Ok(None),
                1 => read(self).map(Some),
                other => Err(format!("option tag {other}")),
            }
        }

        fn status(&mut self) -> Result<Status, String> {
            Ok(Status {
                name: self.string()?,
                protocol: u16::try_from(self.varint()?).map_err(|e| e.to_string())?,
                supervisor_pid: self.u32()?,
                supervisor_started: self.string()?,
                child_pid: self.option(Self::u32)?,
                child_path: self.option(Self::string)?,
                child_args: {
                    let n = self.varint()?;
                    (0..n).map(|_| self.string()).collect::<Result<_, _>>()?
                },
                child_started: self.option(Self::string)?,
                previous_path: self.option(Self::string)?,
                reloads: self.varint()?,
                failures: self.varint()?,
                restarts: self.varint()?,
                state: self.string()?,
                listeners: {
                    let n = self.varint()?;
                    (0..n)
                        .map(|_| Ok((self.string()?, self.string()?)))
                        .collect::<Result<_, String>>()?
                },
            })
        }
    }

    /// Decodes a response message (`[version][body]`, without the frame's length).
    /// The whole message must be consumed.
    pub fn decode_response(message: &[u8]) -> Result<Response, String> {
        let mut reader = Reader { bytes: message };
        let version = u16::from_le_bytes(
            reader
                .raw(2)?
                .try_into()
                .map_err(|_| "no version".to_string())?,
        );
        // Protocols 2 and 3 lay out every response as protocol 1 does but `Status`.
        if version != VERSION && version != 2 && version != 3 {
            return Err(format!("response of protocol version {version}"));
        }
        let response = match reader.varint()? {
            0 if version == 2 => return Err("a protocol-2 status".to_string()),
            0 => Response::Status(Box::new(reader.status()?)),
            1 => Response::Stopped {
                code: reader.i32()?,
            },
            2 => Response::Reloaded {
                old_pid: reader.option(Reader::u32)?,
                new_pid: reader.u32()?,
                ms: reader.varint()?,
            },
            3 => Response::Failed {
                reason: reader.string()?,
            },
            other => return Err(format!("unknown response variant {other}")),
        };
        if !reader.bytes.is_empty() {
            return Err(format!("{} bytes after the response", reader.bytes.len()));
        }
        Ok(response)
    }
}

/// A control client that sends whatever it is given.
pub mod raw {
    use std::io::{self, Read, Write};
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::time::Duration;

    use super::wire::{self, Response};

    /// How long a raw exchange waits for the supervisor's answer.
    pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

    /// Connects to the control socket at `path`, with read and write timeouts of
    /// [`REPLY_TIMEOUT`].
    pub fn connect(path: &Path) -> io::Result<UnixStream> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        Ok(stream)
    }

    /// Reads one frame: `Ok(None)` if the connection closed before any byte of it.
    pub fn read_frame(stream: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < header.len() {
            match crate::again_if_interrupted(|| stream.read(&mut header[got..]))? {
                0 if got == 0 => return Ok(None),
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the frame header ends after {got} bytes"),
                    ));
                }
                n => got += n,
            }
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > wire::MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the supervisor sent a frame of {len} bytes"),
            ));
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body)?;
        Ok(Some(body))
    }

    /// Reads one response frame and decodes it; `Ok(None)` if the connection closed
    /// without one.
    pub fn read_response(stream: &mut UnixStream) -> io::Result<Option<Response>> {
        match read_frame(stream)? {
            None => Ok(None),
            Some(message) => wire::decode_response(&message)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }

    /// Sends `bytes` on a new connection (ignoring a write the supervisor cut short),
    /// closes the writing half, and reads the answer, if any.
    pub fn exchange(path: &Path, bytes: &[u8]) -> io::Result<Option<Response>> {
        let mut stream = connect(path)?;
        let _ = stream.write_all(bytes);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        read_response(&mut stream)
    }

    /// Sends a well-formed request frame and returns the answer; an error if there is
    /// none.
    pub fn ask(path: &Path, frame: &[u8]) -> io::Result<Response> {
        let mut stream = connect(path)?;
        stream.write_all(frame)?;
        read_response(&mut stream)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the supervisor closed the connection without answering",
            )
        })
    }

    /// A hand-encoded `Status` request; panics unless the answer is a status.
    pub fn status(path: &Path) -> wire::Status {
        match ask(path, &wire::status_request()) {
            Ok(Response::Status(status)) => *status,
            other => panic!("a raw status request got {other:?}"),
        }
    }
}

/// What a supervisor serves: its child, the child's address, and its control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serving {
    /// The serving child's pid.
    pub child: u32,
    /// The `http` listener's address.
    pub addr: SocketAddr,
    /// The control socket.
    pub socket: PathBuf,
}

impl Serving {
    /// Reads it from the status of `sup` (whose control socket is `socket`), and checks
    /// that a request is answered by that child.
    pub fn of(sup: &Supervisor<'_>, socket: PathBuf) -> Serving {
        let serving = Serving {
            child: sup.child_pid(),
            addr: sup.addr("http"),
            socket,
        };
        let answer = get(serving.addr).unwrap_or_else(|e| panic!("GET before: {e}"));
        assert_eq!(answer.pid, serving.child, "{}", sup.logs());
        serving
    }

    /// Panics unless the supervisor still runs, answers `status` (by the command and
    /// by a hand-encoded request), shows the same child in state `running`, and that
    /// child answers a request.
    pub fn assert_unchanged(&self, sup: &Supervisor<'_>, after: &str) {
        assert!(
            sup.try_exit().is_none(),
            "the supervisor exited after {after}\n{}",
            sup.logs()
        );
        let status = sup.status();
        assert_eq!(status["state"], "running", "after {after}: {status}");
        assert_eq!(
            status["child_pid"],
            self.child,
            "after {after}, the child changed: {status}\n{}",
            sup.logs()
        );
        let raw = raw::status(&self.socket);
        assert_eq!(raw.child_pid, Some(self.child), "after {after}: {raw:?}");
        let answer =
            get(self.addr).unwrap_or_else(|e| panic!("GET after {after}: {e}\n{}", sup.logs()));
        assert_eq!(answer.pid, self.child, "after {after}");
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    status_field(pid, field)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many fds process `pid` has open.
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}
