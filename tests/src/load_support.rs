//! Load for the reload and upgrade tests: client threads that send requests to one
//! address, new connections or kept-alive ones, and count what they got and from whom.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::reload_support::KeepAlive;
use crate::{Supervisor, http_get};

/// The pid and executable in an answer: `pid PID exe EXE mode MODE` (the helpers) or
/// `pid PID exe EXE` (the `http` example).
pub fn parse_answer(body: &str) -> Option<(u32, String)> {
    let (pid, rest) = body.strip_prefix("pid ")?.split_once(" exe ")?;
    let exe = rest.rsplit_once(" mode ").map_or(rest, |(exe, _)| exe);
    Some((pid.parse().ok()?, exe.trim_end().to_string()))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The kinds of client a [`Load`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// A new connection for each request (`Connection: close`).
    Fresh,
    /// One connection for many requests, replaced when the server says
    /// `Connection: close` (after checking that it then closes cleanly).
    KeepAlive,
}

/// What the client threads of a [`Load`] share.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests answered with a complete `200` response.
    pub ok: AtomicU64,
    /// Responses that said `Connection: close` (keep-alive clients).
    pub closes: AtomicU64,
    /// What went wrong, one entry per failed request.
    pub failures: Mutex<Vec<String>>,
    /// The pids that answered, per client kind.
    pub pids: Mutex<[BTreeSet<u32>; 2]>,
}

impl Tally {
    pub fn fail(&self, client: Client, what: String) {
        lock(&self.failures).push(format!("{client:?}: {what}"));
    }

    pub fn answered(&self, client: Client, body: &str) {
        match parse_answer(body) {
            Some((pid, _)) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                lock(&self.pids)[client as usize].insert(pid);
            }
            None => self.fail(client, format!("unexpected body {body:?}")),
        }
    }
}

/// Client threads sending requests to one address until [`finish`](Self::finish) (or
/// drop, when a test fails) stops them.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    pub tally: Arc<Tally>,
    kinds: Vec<Client>,
    threads: Vec<JoinHandle<()>>,
}

/// The pause between two requests of a client thread: it paces the load (each thread
/// sends a few hundred requests a second) so that the parallel tests on a two-core
/// machine keep some CPU. It is not a wait for anything.
pub const PACE: Duration = Duration::from_millis(2);

impl Load {
    pub fn start(addr: SocketAddr, clients: &[Client]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let threads = clients
            .iter()
            .map(|&client| {
                let stop = Arc::clone(&stop);
                let tally = Arc::clone(&tally);
                std::thread::spawn(move || match client {
                    Client::Fresh => fresh_client(addr, &stop, &tally),
                    Client::KeepAlive => keepalive_client(addr, &stop, &tally),
                })
            })
            .collect();
        Load {
            stop,
            tally,
            kinds: clients.to_vec(),
            threads,
        }
    }

    /// Waits until every kind of client got an answer from `pid`.
    pub fn wait_for_pid(&self, sup: &Supervisor<'_>, pid: u32) {
        sup.wait_for(
            &format!("the load's clients to be answered by pid {pid}"),
            || {
                let failures = lock(&self.tally.failures);
                assert!(failures.is_empty(), "failed requests: {failures:#?}");
                let pids = lock(&self.tally.pids);
                self.kinds
                    .iter()
                    .all(|&kind| pids[kind as usize].contains(&pid))
                    .then_some(())
            },
        );
    }

    /// Stops the clients and returns what they saw: the failures, the pids that
    /// answered, the number of requests answered.
    pub fn finish(mut self) -> (Vec<String>, BTreeSet<u32>, u64) {
        self.stop_threads();
        let failures = std::mem::take(&mut *lock(&self.tally.failures));
        let pids = lock(&self.tally.pids).iter().flatten().copied().collect();
        (failures, pids, self.tally.ok.load(Ordering::Relaxed))
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

pub fn fresh_client(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    while !stop.load(Ordering::Relaxed) {
        match http_get(addr) {
            Ok(body) => tally.answered(Client::Fresh, &body),
            Err(e) => tally.fail(Client::Fresh, e.to_string()),
        }
        std::thread::sleep(PACE);
    }
}

pub fn keepalive_client(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let kind = Client::KeepAlive;
    let mut kept: Option<KeepAlive> = None;
    while !stop.load(Ordering::Relaxed) {
        let connection = match kept.take() {
            Some(connection) => Ok(connection),
            None => KeepAlive::connect(addr),
        };
        let mut connection = match connection {
            Ok(connection) => connection,
            Err(e) => {
                tally.fail(kind, format!("connect: {e}"));
                std::thread::sleep(PACE);
                continue;
            }
        };
        match connection.get() {
            Ok(response) if response.status == 200 => {
                tally.answered(kind, &response.body);
                if response.close {
                    tally.closes.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = connection.expect_clean_close() {
                        tally.fail(kind, format!("after Connection: close: {e}"));
                    }
                } else {
                    kept = Some(connection);
                }
            }
            Ok(response) => tally.fail(kind, format!("status {}", response.status)),
            Err(e) => tally.fail(kind, e.to_string()),
        }
        std::thread::sleep(PACE);
    }
}
