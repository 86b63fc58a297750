//! `lb-state`: the test server of state transfer (service `lbstate`).
//!
//! It takes the state of the process it replaces before it is ready, serves the `http`
//! listener with the greeting of `littleboss_tests::serve`, and gives its own state to
//! the next process that asks. What it does is said on stderr, one line each, which the
//! tests wait for:
//!
//! - `lb-state: pid P took N bytes sum S fds [NAME=TEXT,...] from Q in A us, read in R us`
//!   (A: from asking to having the state; R: reading its bytes once), or `took none`, or
//!   `take_state failed: ERROR`), and with `--typed=V`, `took value COUNTER` (or
//!   `take_value failed: ERROR`);
//! - `lb-state: pid P gave N bytes and K fds to Q in G us` (G: the `give` call), or `give failed: ERROR`, then
//!   `outcome committed` or `outcome not committed`;
//! - `lb-state: pid P got a later snapshot of N bytes sum S` (the successor's
//!   `state_updated`).
//!
//! Its state is `--bytes=N` bytes (a pattern that depends on the pid of the process
//! that first made it: `sum` tells them apart) and `--fds=K` files, each holding
//! `fdI of pid P`. A process that took a state gives on what it took, so a state
//! made once is seen again after many reloads.
//!
//! | switch | effect |
//! |---|---|
//! | `--bytes=N` | a state of N bytes (default 64) |
//! | `--fds=K` | K named fds in it (default 0) |
//! | `--no-offer` | never call `state_wanted` (it offers no state) |
//! | `--decline` | drop each request (no state) |
//! | `--give-after-ms=N` | wait N ms before answering a request |
//! | `--no-take` | never call `take_state` |
//! | `--exit-after-take` | exit 1 after `take_state`, before ready |
//! | `--update` | once in standby or lameduck, give a later snapshot of 32 bytes |
//! | `--typed=V` | give and take a typed value of format version V (a counter, one more each generation) |

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use littleboss::{Context, Inherited};
use littleboss_tests::{say, switches};

/// The behaviour switches.
#[derive(Debug, Clone)]
struct Opts {
    bytes: usize,
    fds: usize,
    no_offer: bool,
    decline: bool,
    give_after_ms: u64,
    no_take: bool,
    exit_after_take: bool,
    update: bool,
    typed: Option<u32>,
}

impl Opts {
    fn parse(args: Vec<std::ffi::OsString>) -> Result<Opts, String> {
        let mut opts = Opts {
            bytes: 64,
            fds: 0,
            no_offer: false,
            decline: false,
            give_after_ms: 0,
            no_take: false,
            exit_after_take: false,
            update: false,
            typed: None,
        };
        for arg in switches(args) {
            let arg = arg?;
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg.as_str(), None),
            };
            let number = |value: Option<&str>| -> Result<u64, String> {
                value
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{name} needs a number: {arg}"))
            };
            match name {
                "--bytes" => opts.bytes = number(value)? as usize,
                "--fds" => opts.fds = number(value)? as usize,
                "--no-offer" => opts.no_offer = true,
                "--decline" => opts.decline = true,
                "--give-after-ms" => opts.give_after_ms = number(value)?,
                "--no-take" => opts.no_take = true,
                "--exit-after-take" => opts.exit_after_take = true,
                "--update" => opts.update = true,
                "--typed" => opts.typed = Some(number(value)? as u32),
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        Ok(opts)
    }
}

/// What this process gives: the bytes, and the text of each named fd.
#[derive(Debug, Clone)]
struct State {
    bytes: Arc<Bytes>,
    fds: Vec<(String, String)>,
    counter: u64,
}

/// The bytes of the state: made here, or the state taken (given on as it is, without
/// a copy).
#[derive(Debug)]
enum Bytes {
    Made(Vec<u8>),
    Taken(Inherited),
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Made(bytes) => bytes,
            Bytes::Taken(inherited) => inherited.bytes(),
        }
    }
}

/// The files of the state's named fds, made once: each request is given duplicates.
fn make_fds(state: &State, pid: u32) -> Vec<(String, OwnedFd)> {
    let mut made = Vec::new();
    for (name, text) in &state.fds {
        match text_fd(text) {
            Ok(fd) => made.push((name.clone(), fd)),
            Err(e) => say!("lb-state: pid {pid} cannot make fd {name}: {e}"),
        }
    }
    made
}

/// One request being answered, counted while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(count))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A typed state: a counter that each generation adds one to.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Typed {
    counter: u64,
}

/// The pattern of a state first made by `pid`.
fn pattern(pid: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(pid) as u8)
        .collect()
}

fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|b| u64::from(*b)).sum()
}

/// A file holding `text`, as an fd to give.
fn text_fd(text: &str) -> io::Result<OwnedFd> {
    let file = tempfile::tempfile()?;
    file.write_all_at(text.as_bytes(), 0)?;
    Ok(OwnedFd::from(file))
}

/// The text an fd given holds.
fn read_fd(fd: OwnedFd) -> String {
    let file = std::fs::File::from(fd);
    let mut buf = vec![0u8; 256];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Takes the state of the process this one replaces, as the switches say.
async fn take(lb: &Context, opts: &Opts, pid: u32) -> Option<State> {
    if opts.no_take {
        return None;
    }
    let asked = Instant::now();
    let mut inherited: Inherited = match lb.take_state().await {
        Ok(Some(inherited)) => inherited,
        Ok(None) => {
            say!("lb-state: pid {pid} took none");
            return None;
        }
        Err(e) => {
            say!("lb-state: pid {pid} take_state failed: {e}");
            return None;
        }
    };
    let took = asked.elapsed();
    let from = inherited.predecessor_pid();
    let mut counter = 0;
    if let Some(version) = opts.typed {
        match inherited.take_value::<Typed>(version) {
            Ok(value) => {
                say!("lb-state: pid {pid} took value {}", value.counter);
                counter = value.counter;
            }
            Err(e) => say!("lb-state: pid {pid} take_value failed: {e}"),
        }
    }
    let reading = Instant::now();
    let total = sum(inherited.bytes());
    let read = reading.elapsed();
    let len = inherited.bytes().len();
    let fds: Vec<(String, String)> = inherited
        .take_fds()
        .into_iter()
        .map(|(name, fd)| (name, read_fd(fd)))
        .collect();
    let shown: Vec<String> = fds.iter().map(|(n, t)| format!("{n}={t}")).collect();
    say!(
        "lb-state: pid {pid} took {} bytes sum {total} fds [{}] from {from} in {} us, read in {} us",
        len,
        shown.join(","),
        took.as_micros(),
        read.as_micros()
    );
    Some(State {
        bytes: Arc::new(Bytes::Taken(inherited)),
        fds,
        counter,
    })
}

/// Answers every request for the state, as the switches say; `busy` counts the
/// requests being answered, until their outcome is said.
async fn give_loop(lb: Context, opts: Opts, state: State, pid: u32, busy: Arc<AtomicUsize>) {
    // Made, and offered, before the process is ready: a reload right after finds it.
    let made = make_fds(&state, pid);
    let mut wanted = Box::pin(lb.state_wanted());
    loop {
        let request = wanted.await;
        wanted = Box::pin(lb.state_wanted());
        let _busy = Busy::new(&busy);
        let successor = request.successor_pid();
        if opts.decline {
            drop(request);
            say!("lb-state: pid {pid} declined {successor}");
            continue;
        }
        if opts.give_after_ms > 0 {
            tokio::time::sleep(Duration::from_millis(opts.give_after_ms)).await;
        }
        // Duplicates of the files made once: what is given stays ours to use.
        let fds: Vec<(String, OwnedFd)> = (made.iter())
            .filter_map(|(name, fd)| fd.try_clone().ok().map(|fd| (name.clone(), fd)))
            .collect();
        let count = fds.len();
        let giving = Instant::now();
        let given = match opts.typed {
            Some(version) => {
                let value = Typed {
                    counter: state.counter + 1,
                };
                request.give_value(version, &value, fds)
            }
            None => {
                let bytes = Arc::clone(&state.bytes);
                let given =
                    tokio::task::spawn_blocking(move || request.give(bytes.get(), fds)).await;
                match given {
                    Ok(given) => given,
                    Err(e) => {
                        say!("lb-state: pid {pid} give failed: {e}");
                        continue;
                    }
                }
            }
        };
        let mut given = match given {
            Ok(given) => given,
            Err(e) => {
                say!("lb-state: pid {pid} give failed: {e}");
                continue;
            }
        };
        say!(
            "lb-state: pid {pid} gave {} bytes and {count} fds to {successor} in {} us",
            state.bytes.get().len(),
            giving.elapsed().as_micros()
        );
        if opts.update {
            let lb = lb.clone();
            let standby = lb.standby();
            let lameduck = lb.lameduck();
            tokio::select! {
                () = standby => {}
                () = lameduck => {}
            }
            let snapshot = pattern(pid ^ 0x5a5a, 32);
            match given.update(&snapshot, Vec::new()) {
                Ok(()) => say!("lb-state: pid {pid} gave a later snapshot of 32 bytes"),
                Err(e) => say!("lb-state: pid {pid} later snapshot failed: {e}"),
            }
        }
        let committed = given.outcome().await;
        say!(
            "lb-state: pid {pid} outcome {}",
            if committed {
                "committed"
            } else {
                "not committed"
            }
        );
    }
}

#[littleboss::main(
    name = "lbstate",
    listener(http = "tcp:127.0.0.1:0"),
    calls_ready = true,
    lameduck = "2s",
    state_timeout = "3s"
)]
async fn main(lb: Context) -> io::Result<()> {
    let pid = std::process::id();
    let opts = match Opts::parse(lb.args()) {
        Ok(opts) => opts,
        Err(e) => {
            say!("lb-state: {e}");
            std::process::exit(2);
        }
    };
    let state = match take(&lb, &opts, pid).await {
        Some(state) => state,
        None => {
            let mut fds = Vec::new();
            for i in 0..opts.fds {
                fds.push((format!("fd{i}"), format!("fd{i} of pid {pid}")));
            }
            State {
                bytes: Arc::new(Bytes::Made(pattern(pid, opts.bytes))),
                fds,
                counter: 0,
            }
        }
    };
    if opts.exit_after_take {
        say!("lb-state: pid {pid} exiting after take_state");
        std::process::exit(1);
    }
    let busy = Arc::new(AtomicUsize::new(0));
    if !opts.no_offer {
        let giving = give_loop(lb.clone(), opts.clone(), state, pid, Arc::clone(&busy));
        // The loop's first steps (making the fds, offering) run here, before ready.
        let mut giving = Box::pin(giving);
        let waker = std::task::Waker::noop();
        let _ = giving
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
        tokio::spawn(giving);
    }
    tokio::spawn({
        let lb = lb.clone();
        async move {
            let update = lb.state_updated().await;
            say!(
                "lb-state: pid {pid} got a later snapshot of {} bytes sum {}",
                update.bytes().len(),
                sum(update.bytes())
            );
        }
    });
    let listener = lb.tcp_listener("http")?;
    say!(
        "lb-state: pid {pid} serving http on {}",
        listener.local_addr()?
    );
    lb.ready();
    littleboss_tests::serve::serve_greeting(listener, &lb, "lb-state: accept").await?;
    // A request being answered is answered, and its outcome said, before the process
    // ends (within its lameduck time).
    let deadline = Instant::now() + Duration::from_millis(1800);
    while busy.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
