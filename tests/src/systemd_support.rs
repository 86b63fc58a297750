//! Support for the systemd, unix-listener, example and container tests: supervisors
//! started through another program (`env`, `systemd-socket-activate`, `unshare`), a
//! receiver for systemd's notify protocol, and a few views of `/proc` (the general ones
//! are in the crate's root).

use std::ffi::OsStr;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{DEADLINE, Env, Spawned, Supervisor, status_field};

/// Starts `argv` (the program first, found in `PATH` if it has no `/`) as a guarded
/// supervisor of `bin`: for a program that runs the supervisor by `exec`, with the same
/// pid (`env VAR=VALUE BIN --littleboss=start`, `systemd-socket-activate ... BIN ...`),
/// or, with `--littleboss=start` among its arguments, for `bin` itself with a command
/// line of its own spelling. Status commands run `bin`. Nothing is waited for.
pub fn supervise<'e, S: AsRef<OsStr>>(env: &'e Env, argv: &[S], bin: &Path) -> Supervisor<'e> {
    let (program, args) = argv.split_first().expect("a program to run");
    Supervisor {
        env,
        bin: bin.to_path_buf(),
        process: env.spawn(Path::new(program), args),
    }
}

/// [`supervise`], then waits until the supervisor reports `running`.
pub fn supervise_running<'e, S: AsRef<OsStr>>(
    env: &'e Env,
    argv: &[S],
    bin: &Path,
) -> Supervisor<'e> {
    let supervisor = supervise(env, argv, bin);
    supervisor.wait_running();
    supervisor
}

/// The guarded process of a supervisor (for a test that needs [`Spawned`] alone).
pub fn process<'a>(supervisor: &'a Supervisor<'_>) -> &'a Spawned {
    &supervisor.process
}

/// The full path of `program` found in `PATH` (or in the usual system directories).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                    && m.is_file()
            })
        })
}

/// The environment process `pid` was started with, `NAME=VALUE` each.
pub fn environ(pid: u32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/environ: {e}"));
    bytes
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// The names of the variables of [`environ`] that start with one of `prefixes`.
pub fn environ_names_with(pid: u32, prefixes: &[&str]) -> Vec<String> {
    environ(pid)
        .into_iter()
        .filter_map(|entry| entry.split_once('=').map(|(name, _)| name.to_string()))
        .filter(|name| prefixes.iter().any(|p| name.starts_with(p)))
        .collect()
}

/// The pid of process `pid` in its innermost pid namespace (the last of `NSpid`).
pub fn innermost_pid(pid: u32) -> Option<u32> {
    status_field(pid, "NSpid")?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd's `MONOTONIC_USEC` counts.
pub fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec).expect("a positive time") * 1_000_000
        + u64::try_from(now.tv_nsec).expect("a positive time") / 1_000
}

/// Reads everything a stream sends until it closes (at most `timeout` a read).
pub fn read_all(mut stream: impl Read, what: &str) -> io::Result<String> {
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("reading from {what}: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Connects to `addr` over TCP and returns everything the server sends (the helper
/// programs that answer with a line, without reading a request).
pub fn tcp_line(addr: SocketAddr) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, crate::HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(crate::HTTP_TIMEOUT))?;
    read_all(stream, &addr.to_string())
}

/// Where a notify receiver listens.
#[derive(Debug, Clone)]
pub enum NotifyAddr {
    /// A socket file.
    Path(PathBuf),
    /// A name in the abstract namespace (without the `@`).
    Abstract(String),
}

/// A stand-in for systemd's notify socket: a bound `SOCK_DGRAM` unix socket whose
/// address is given to a supervisor as `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct NotifyReceiver {
    socket: UnixDatagram,
    addr: NotifyAddr,
}

impl NotifyReceiver {
    /// Binds a socket file at `path`.
    pub fn bind_path(path: &Path) -> NotifyReceiver {
        let socket = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("bind a notify socket at {}: {e}", path.display()));
        NotifyReceiver {
            socket,
            addr: NotifyAddr::Path(path.to_path_buf()),
        }
    }

    /// Binds `name` in the abstract namespace.
    pub fn bind_abstract(name: &str) -> NotifyReceiver {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("an abstract socket address");
        let socket = UnixDatagram::bind_addr(&addr)
            .unwrap_or_else(|e| panic!("bind the abstract notify socket @{name}: {e}"));
        NotifyReceiver {
            socket,
            addr: NotifyAddr::Abstract(name.to_string()),
        }
    }

    /// `NOTIFY_SOCKET=...` for `env`.
    pub fn env_assignment(&self) -> String {
        match &self.addr {
            NotifyAddr::Path(path) => format!("NOTIFY_SOCKET={}", path.display()),
            NotifyAddr::Abstract(name) => format!("NOTIFY_SOCKET=@{name}"),
        }
    }

    /// The next message, waiting up to [`DEADLINE`]; panics with `context` if none comes.
    pub fn recv(&self, context: &str) -> String {
        self.try_recv(DEADLINE)
            .unwrap_or_else(|e| panic!("no notify message within {DEADLINE:?} ({e}): {context}"))
    }

    /// The next message, waiting up to `timeout`.
    pub fn try_recv(&self, timeout: Duration) -> io::Result<String> {
        self.socket.set_read_timeout(Some(timeout))?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = crate::again_if_interrupted(|| self.socket.recv(&mut buf))?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Every message already queued, without waiting.
    pub fn drain(&self) -> Vec<String> {
        let mut messages = Vec::new();
        self.socket
            .set_nonblocking(true)
            .expect("make the notify socket non-blocking");
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = self.socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket
            .set_nonblocking(false)
            .expect("make the notify socket blocking");
        messages
    }
}
