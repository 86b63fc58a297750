//! `lb-fake-child MODE`: a plain program that poses as a littleboss child and
//! misbehaves on its channel, for `tests/child_channel.rs`. The supervisor runs it
//! through a hand-encoded `Reload` request.
//!
//! It takes its end of the channel from `LITTLEBOSS_CHANNEL_FD` (a `SOCK_SEQPACKET`
//! socket), sends what `MODE` says, prints on stderr what the supervisor answers, and
//! waits (at most a minute) for the supervisor to end it. `MODE` is its first argument
//! that does not start with `--` (the supervisor puts its listener flags first):
//!
//! | mode | first packet |
//! |---|---|
//! | `garbage` | bytes that are no message |
//! | `wrong-name` | a valid hello of service `intruder` |
//! | `wrong-version` | a hello of protocol version 9, which no release speaks |
//! | `ready-first` | `Ready` before any hello |
//! | `with-fds` | a valid hello with an fd attached |
//! | `oversized` | a valid hello padded to 70 000 bytes |
//! | `garbage-after-hello` | a valid hello (calls ready); after the welcome, garbage |
//! | `huge-ready-timeout` | a hello with `ready_timeout_ms` = `u64::MAX`; then `Ready` |
//! | `huge-settle` | a hello with `calls_ready` false and `settle_ms` = `u64::MAX` |
//! | `huge-lameduck` | a hello with `lameduck_ms` = `u64::MAX`; then `Ready` |
//! | `deaf` | a hello of protocol 3; `Ready`; then 4,000 hand-overs of a TCP connection, never reading again |
//! | `forged` | a hello of protocol 3; `Ready`; then hand-overs of a listening socket, of a unix socket as `http`, and of a TCP connection carrying 17,000 bytes |
//! | `garbage-when-told` | a valid hello; `Ready`; once the file `LB_FAKE_CHILD_TRIGGER` names exists, garbage |
//! | `state-half` | a hello of protocol 6; `OffersState`; `Ready`; asked for its state, the head of one of 16 bytes and 2 fds with its sealed memfd, then exit 1 before the fds |
//! | `state-unsealed` | as `state-half`, but the state (no fds) comes in a memfd with no seals; exits 0 at lameduck |
//! | `state-short` | as `state-unsealed`, in a sealed memfd of 8 bytes where the head says 16 |
//! | `state-unasked` | a hello of protocol 6; `Ready`; then, asked by nobody, a state of 16 bytes and 1 fd; exits 0 at lameduck |
//! | `state-deaf` | a hello of protocol 6 (ready timeout 1.5 s); `StateAsk`; then never reads its channel, nor says ready |
//! | `adopt-6` | a hello of protocol 6; `Adopts` of listener `http`; `Ready`; then it says what each message it gets is (`got message N with F fds`, N the variant's index) and exits 0 at lameduck |
//!
//! The hello names service `lbhttp`, or what `LB_FAKE_CHILD_NAME` says.
//!
//! In the `huge-*` modes it behaves well otherwise: it exits 0 when it gets lameduck
//! (or when the channel closes), so a supervisor that copes with the values can retire
//! it.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

use littleboss_tests::attack_support::wire;
use rustix::net::{
    RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

fn main() -> ExitCode {
    let pid = std::process::id();
    let Some(mode) = std::env::args().skip(1).find(|arg| !arg.starts_with("--")) else {
        littleboss_tests::say!("lb-fake-child: no mode given");
        return ExitCode::from(2);
    };
    let Some(raw) = std::env::var("LITTLEBOSS_CHANNEL_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        littleboss_tests::say!("lb-fake-child: LITTLEBOSS_CHANNEL_FD is not set");
        return ExitCode::from(2);
    };
    if rustix::io::fcntl_getfd(
        // SAFETY: a syscall on an fd number that may be closed is memory-safe (EBADF);
        // the borrow ends with the call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) },
    )
    .is_err()
    {
        littleboss_tests::say!("lb-fake-child: fd {raw} is not open");
        return ExitCode::from(2);
    }
    // SAFETY: the fd is open (checked above) and the supervisor left it to this process
    // alone; nothing else here owns it.
    let channel = unsafe { OwnedFd::from_raw_fd(raw) };
    let name = std::env::var("LB_FAKE_CHILD_NAME").unwrap_or_else(|_| "lbhttp".to_string());
    let hello = wire::Hello {
        name: &name,
        pid,
        calls_ready: true,
        settle_ms: 250,
        ready_timeout_ms: 30_000,
        lameduck_ms: 2_000,
    };
    let good_hello = wire::message(wire::VERSION, &wire::hello_body(&hello));
    // Said before sending: the supervisor may kill this process at once.
    littleboss_tests::say!("lb-fake-child: pid {pid} sending {mode}");
    let sent = match mode.as_str() {
        "garbage" => send(&channel, b"\xde\xad\xbe\xef garbage, not a message"),
        "wrong-name" => send(
            &channel,
            &wire::message(
                wire::VERSION,
                &wire::hello_body(&wire::Hello {
                    name: "intruder",
                    ..hello
                }),
            ),
        ),
        "wrong-version" => send(&channel, &wire::message(9, &wire::hello_body(&hello))),
        "ready-first" => send(&channel, &wire::message(wire::VERSION, &wire::ready_body())),
        "with-fds" => send_with_fd(&channel, &good_hello),
        "oversized" => {
            let mut padded = good_hello.clone();
            padded.resize(70_000, 0);
            send(&channel, &padded)
        }
        "garbage-after-hello" => send(&channel, &good_hello).and_then(|()| {
            report(&channel, pid);
            send(&channel, b"\xff\xff\xff after the welcome")
        }),
        "garbage-when-told" => ready_then_garbage(&channel, pid, &good_hello),
        "deaf" => hand_over_without_reading(&channel, pid, &hello),
        "state-half" => give_bad_state(&channel, pid, &hello, BadState::Half),
        "state-unsealed" => give_bad_state(&channel, pid, &hello, BadState::Unsealed),
        "state-short" => give_bad_state(&channel, pid, &hello, BadState::Short),
        "state-unasked" => give_bad_state(&channel, pid, &hello, BadState::Unasked),
        "state-deaf" => ask_state_then_never_read(&channel, pid, &hello),
        "forged" => hand_over_forgeries(&channel, pid, &hello),
        "adopt-6" => adopt_at_6(&channel, pid, &hello),
        "huge-ready-timeout" => well_behaved(
            &channel,
            pid,
            &wire::Hello {
                ready_timeout_ms: u64::MAX,
                ..hello
            },
        ),
        "huge-settle" => well_behaved(
            &channel,
            pid,
            &wire::Hello {
                calls_ready: false,
                settle_ms: u64::MAX,
                ..hello
            },
        ),
        "huge-lameduck" => well_behaved(
            &channel,
            pid,
            &wire::Hello {
                lameduck_ms: u64::MAX,
                ..hello
            },
        ),
        other => {
            littleboss_tests::say!("lb-fake-child: unknown mode {other:?}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = sent {
        littleboss_tests::say!("lb-fake-child: pid {pid} send failed: {e}");
    }
    // Wait to be killed: the supervisor must end this process, not its own exit.
    let _ = rustix::net::sockopt::set_socket_timeout(
        &channel,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(60)),
    );
    while report(&channel, pid) {}
    littleboss_tests::say!("lb-fake-child: pid {pid} exiting");
    ExitCode::SUCCESS
}

/// Says `hello`, takes the welcome, says ready (if the hello says it calls it), and
/// exits 0 at lameduck or at the end of the channel.
fn well_behaved(channel: &OwnedFd, pid: u32, hello: &wire::Hello<'_>) -> rustix::io::Result<()> {
    send(
        channel,
        &wire::message(wire::VERSION, &wire::hello_body(hello)),
    )?;
    report(channel, pid);
    if hello.calls_ready {
        send(channel, &wire::message(wire::VERSION, &wire::ready_body()))?;
    }
    let lameduck = wire::message(wire::VERSION, &[2]);
    loop {
        let mut buf = [0u8; 64];
        match rustix::net::recv(channel, &mut buf, RecvFlags::empty()) {
            Ok((0, _)) => break,
            Ok((n, _)) if buf[..n] == lameduck[..] => break,
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    littleboss_tests::say!("lb-fake-child: pid {pid} got lameduck; exiting 0");
    std::process::exit(0);
}

/// Says `hello` at protocol 6, adopts the connections of listener `http`, says ready,
/// then says what each message it gets is, until lameduck.
fn adopt_at_6(channel: &OwnedFd, pid: u32, hello: &wire::Hello<'_>) -> rustix::io::Result<()> {
    send(
        channel,
        &wire::message(STATE_VERSION, &wire::hello_body(hello)),
    )?;
    report(channel, pid);
    // `Adopts` (variant 3) of `http`.
    let mut adopts = vec![3];
    wire::bytes(&mut adopts, b"http");
    send(channel, &wire::message(STATE_VERSION, &adopts))?;
    send(channel, &wire::message(STATE_VERSION, &wire::ready_body()))?;
    loop {
        let (bytes, fds) = match receive(channel) {
            Ok(Some(received)) => received,
            Err(rustix::io::Errno::INTR) => continue,
            Ok(None) | Err(_) => break,
        };
        let Some(&variant) = bytes.get(2) else {
            break;
        };
        littleboss_tests::say!("lb-fake-child: pid {pid} got message {variant} with {fds} fds");
        // `Lameduck` (variant 2).
        if variant == 2 {
            break;
        }
    }
    littleboss_tests::say!("lb-fake-child: pid {pid} got lameduck; exiting 0");
    std::process::exit(0);
}

/// Says `hello` at protocol 3, takes the welcome and says ready: a serving child that
/// may hand connections over.
fn ready_at_3(channel: &OwnedFd, pid: u32, hello: &wire::Hello<'_>) -> rustix::io::Result<()> {
    send(channel, &wire::message(3, &wire::hello_body(hello)))?;
    report(channel, pid);
    send(channel, &wire::message(3, &wire::ready_body()))
}

/// The protocol version of state transfer.
const STATE_VERSION: u16 = 6;

/// How a fake child gives its state wrong.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BadState {
    /// The head says 2 fds follow; the process exits before they do.
    Half,
    /// The memfd has no seals.
    Unsealed,
    /// The sealed memfd holds 8 bytes; the head says 16.
    Short,
    /// Given at once, with 1 fd, though nobody asked.
    Unasked,
}

/// Says hello at protocol 6, offers its state, says ready, and answers the first
/// `StateWanted` as `how` says; then exits (`Half`) or serves on until lameduck.
fn give_bad_state(
    channel: &OwnedFd,
    pid: u32,
    hello: &wire::Hello<'_>,
    how: BadState,
) -> rustix::io::Result<()> {
    send(
        channel,
        &wire::message(STATE_VERSION, &wire::hello_body(hello)),
    )?;
    report(channel, pid);
    // `OffersState` (variant 12), then `Ready`.
    send(channel, &wire::message(STATE_VERSION, &[12]))?;
    send(channel, &wire::message(STATE_VERSION, &wire::ready_body()))?;
    let lameduck = [6, 0, 2];
    if how != BadState::Unasked && !wait_for_request(channel, pid)? {
        return Ok(());
    }
    let (holds, seal, fds): (&[u8], bool, u64) = match how {
        BadState::Half => (&[7; 16], true, 2),
        BadState::Unsealed => (&[7; 16], false, 0),
        BadState::Short => (&[7; 8], true, 0),
        BadState::Unasked => (&[7; 16], true, 1),
    };
    let file = memfd(holds, seal)?;
    // `StateGive` (variant 14): size, fds, from, update.
    let mut body = vec![14];
    wire::varint(&mut body, 16);
    wire::varint(&mut body, fds);
    wire::varint(&mut body, 0);
    body.push(0);
    send_with(channel, &wire::message(STATE_VERSION, &body), file.as_fd())?;
    if how == BadState::Unasked {
        // `StateFds` (variant 15) of one name, with a copy of the file as its fd.
        let mut body = vec![15, 1];
        wire::bytes(&mut body, b"forged");
        send_with(channel, &wire::message(STATE_VERSION, &body), file.as_fd())?;
    }
    littleboss_tests::say!("lb-fake-child: pid {pid} gave a bad state");
    if how == BadState::Half {
        littleboss_tests::say!("lb-fake-child: pid {pid} exiting halfway through giving");
        std::process::exit(1);
    }
    loop {
        let mut buf = [0u8; 256];
        match rustix::net::recv(channel, &mut buf, RecvFlags::empty()) {
            Ok((0, _)) => return Ok(()),
            Ok((n, _)) if buf[..n] == lameduck => break,
            Ok((n, _)) => {
                littleboss_tests::say!("lb-fake-child: pid {pid} was told {:?}", &buf[..n]);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    littleboss_tests::say!("lb-fake-child: pid {pid} got lameduck; exiting 0");
    std::process::exit(0);
}

/// Reads until the supervisor asks for the state (`StateWanted`): `false` if the
/// channel ends first; lameduck first ends the process.
fn wait_for_request(channel: &OwnedFd, pid: u32) -> rustix::io::Result<bool> {
    let wanted = [6, 0, 11];
    let lameduck = [6, 0, 2];
    loop {
        let mut buf = [0u8; 256];
        match rustix::net::recv(channel, &mut buf, RecvFlags::empty()) {
            Ok((0, _)) => return Ok(false),
            Ok((n, _)) if buf[..n].starts_with(&wanted) => return Ok(true),
            Ok((n, _)) if buf[..n] == lameduck => {
                littleboss_tests::say!("lb-fake-child: pid {pid} got lameduck before a request");
                std::process::exit(0);
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A memfd holding `bytes`, sealed against writing, growing and shrinking if `seal`.
fn memfd(bytes: &[u8], seal: bool) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(
        "lb-fake-child",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    rustix::io::write(&fd, bytes)?;
    if seal {
        rustix::fs::fcntl_add_seals(
            &fd,
            SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
        )?;
    }
    Ok(fd)
}

/// Says hello at protocol 6 (ready within 1.5 s), takes the welcome, asks for the
/// state of the process it replaces, and then never reads its channel again.
fn ask_state_then_never_read(
    channel: &OwnedFd,
    pid: u32,
    hello: &wire::Hello<'_>,
) -> rustix::io::Result<()> {
    let hello = wire::Hello {
        ready_timeout_ms: 1_500,
        ..hello.clone()
    };
    send(
        channel,
        &wire::message(STATE_VERSION, &wire::hello_body(&hello)),
    )?;
    report(channel, pid);
    // `StateAsk` (variant 13) with a timeout of 1 s.
    let mut body = vec![13];
    wire::varint(&mut body, 1_000);
    send(channel, &wire::message(STATE_VERSION, &body))?;
    littleboss_tests::say!("lb-fake-child: pid {pid} asked for the state; reading no more");
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(0);
}

/// A TCP connection on loopback: its listener, its client end, and the accepted end.
fn tcp_connection() -> rustix::io::Result<(
    std::net::TcpListener,
    std::net::TcpStream,
    std::net::TcpStream,
)> {
    let io = |_| rustix::io::Errno::IO;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let client = std::net::TcpStream::connect(listener.local_addr().map_err(io)?).map_err(io)?;
    let (conn, _) = listener.accept().map_err(io)?;
    Ok((listener, client, conn))
}

/// Says `hello` at protocol 3, takes the welcome, says ready, then hands one TCP
/// connection over 4,000 times without reading the channel again: every answer the
/// supervisor sends (it gives each back, as nobody adopts them) piles up.
fn hand_over_without_reading(
    channel: &OwnedFd,
    pid: u32,
    hello: &wire::Hello<'_>,
) -> rustix::io::Result<()> {
    ready_at_3(channel, pid, hello)?;
    let (_listener, _client, conn) = tcp_connection()?;
    littleboss_tests::say!("lb-fake-child: pid {pid} handing over without reading");
    for id in 0..4_000u64 {
        // `Hand` (variant 4) of one parcel: its id, the listener, no bytes read.
        let mut body = vec![4, 1];
        wire::varint(&mut body, id);
        wire::bytes(&mut body, b"http");
        wire::bytes(&mut body, b"");
        send_with(channel, &wire::message(3, &body), conn.as_fd())?;
    }
    littleboss_tests::say!("lb-fake-child: pid {pid} handed over 4000 times");
    // Deaf to the end: the supervisor must end this process.
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(0);
}

/// Says `hello` at protocol 3, takes the welcome, says ready, then hands over three
/// things that are not connections of its `http` listener (a TCP listener), one per
/// message, and reads what the supervisor answers.
fn hand_over_forgeries(
    channel: &OwnedFd,
    pid: u32,
    hello: &wire::Hello<'_>,
) -> rustix::io::Result<()> {
    ready_at_3(channel, pid, hello)?;
    let (listener, _client, conn) = tcp_connection()?;
    let io = |_| rustix::io::Errno::IO;
    let (unix, _other) = std::os::unix::net::UnixStream::pair().map_err(io)?;
    let carried = vec![b'x'; 17_000];
    let forgeries: [(u64, &[u8], std::os::fd::BorrowedFd<'_>); 3] = [
        (1, b"", listener.as_fd()),
        (2, b"", unix.as_fd()),
        (3, &carried, conn.as_fd()),
    ];
    for (id, bytes, fd) in forgeries {
        let mut body = vec![4, 1];
        wire::varint(&mut body, id);
        wire::bytes(&mut body, b"http");
        wire::bytes(&mut body, bytes);
        send_with(channel, &wire::message(3, &body), fd)?;
    }
    littleboss_tests::say!("lb-fake-child: pid {pid} handed over 3 forgeries");
    Ok(())
}

/// Says `hello`, takes the welcome, says ready, and serves (as far as the supervisor
/// can tell) until the file `LB_FAKE_CHILD_TRIGGER` names exists; then sends garbage.
fn ready_then_garbage(channel: &OwnedFd, pid: u32, hello: &[u8]) -> rustix::io::Result<()> {
    send(channel, hello)?;
    report(channel, pid);
    send(channel, &wire::message(wire::VERSION, &wire::ready_body()))?;
    let trigger = std::env::var_os("LB_FAKE_CHILD_TRIGGER").unwrap_or_default();
    for _ in 0..6_000 {
        if std::path::Path::new(&trigger).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    littleboss_tests::say!("lb-fake-child: pid {pid} sending garbage now");
    send(channel, b"\xde\xad garbage from a ready child")
}

fn send(channel: &OwnedFd, bytes: &[u8]) -> rustix::io::Result<()> {
    rustix::net::send(channel, bytes, SendFlags::NOSIGNAL).map(|_| ())
}

/// Sends `bytes` with a copy of stdin's fd attached.
fn send_with_fd(channel: &OwnedFd, bytes: &[u8]) -> rustix::io::Result<()> {
    let stdin = std::io::stdin();
    send_with(channel, bytes, stdin.as_fd())
}

/// Sends `bytes` with `fd` attached.
fn send_with(
    channel: &OwnedFd,
    bytes: &[u8],
    fd: std::os::fd::BorrowedFd<'_>,
) -> rustix::io::Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        channel,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map(|_| ())
}

/// Receives one packet and prints its size; `false` at the end of the channel or on an
/// error (a timeout included).
fn report(channel: &OwnedFd, pid: u32) -> bool {
    match receive(channel) {
        Ok(None) => false,
        Ok(Some((bytes, fds))) => {
            littleboss_tests::say!(
                "lb-fake-child: pid {pid} got {} bytes and {fds} control messages from the supervisor",
                bytes.len()
            );
            true
        }
        Err(rustix::io::Errno::INTR) => true,
        Err(e) => {
            littleboss_tests::say!("lb-fake-child: pid {pid} recv: {e}");
            false
        }
    }
}

/// One packet from the supervisor: its bytes and how many control messages (of fds)
/// came with it (closed at once); `None` at the end of the channel.
fn receive(channel: &OwnedFd) -> rustix::io::Result<Option<(Vec<u8>, usize)>> {
    let mut buf = vec![0u8; 65536];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(128))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        channel,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Ok(None);
    }
    let fds = control.drain().count();
    buf.truncate(msg.bytes);
    Ok(Some((buf, fds)))
}
