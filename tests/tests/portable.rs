//! The supervisor on the paths macOS takes, run on Linux with `LITTLEBOSS_PORTABLE=1`:
//! a stream socket pair for the channel (length-prefixed messages), close-on-exec set
//! by hand under the spawn lock, executables run by path once checked, exits seen on
//! `SIGCHLD`. The same scenarios as elsewhere: start, status, a reload under load that
//! loses no request, stop, a child that dies; and a check that the switch changes what
//! it says (and that without it Linux keeps its own paths).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use littleboss_tests::{
    Answer, COMMAND_TIMEOUT, Env, NO_ARGS, Outcome, Supervisor, bin, children_of, copy_binary, get,
    http_get, run_for, wait_gone,
};

/// The socket type of process `pid`'s channel (`/proc/net/unix`'s `Type`: `0001` for
/// a stream socket, `0005` for seqpacket), found through its `LITTLEBOSS_CHANNEL_FD`.
fn channel_type(pid: u32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the child's environment");
    let fd = environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(b"LITTLEBOSS_CHANNEL_FD="))
        .map(|fd| String::from_utf8_lossy(fd).into_owned())
        .expect("the child has LITTLEBOSS_CHANNEL_FD");
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("the channel fd");
    let inode = link
        .to_string_lossy()
        .strip_prefix("socket:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("fd {fd} of pid {pid} is {link:?}, not a socket"));
    let table = std::fs::read_to_string("/proc/net/unix").expect("/proc/net/unix");
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(6) == Some(&inode.as_str()))
        .and_then(|fields| fields.get(4).map(|t| t.to_string()))
        .unwrap_or_else(|| panic!("socket {inode} is not in /proc/net/unix"))
}

/// Whether process `pid` holds a pidfd.
fn holds_pidfd(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's fds")
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .any(|target| target.to_string_lossy().contains("pidfd"))
}

/// The name the kernel gives process `pid`: the last part of the path it was executed
/// by (a number when it was run through `/proc/self/fd/N`).
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .expect("the process's name")
        .trim_end()
        .to_string()
}

#[test]
fn start_status_and_stop_take_the_portable_paths() {
    let env = Env::portable();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let status = sup.status();
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["supervisor_pid"], sup.pid(), "{status}");
    let child = sup.child_pid();
    assert_eq!(children_of(sup.pid()), vec![child]);
    assert_eq!(channel_type(child), "0001", "a stream channel");
    assert_eq!(comm(child), "lb-http", "run by its path");
    assert!(!holds_pidfd(sup.pid()), "no pidfds");
    let answer = get(sup.addr("http")).expect("GET through the passed listener");
    assert_eq!(answer.pid, child);
    assert_eq!(answer.mode, "supervised");
    assert_eq!(
        answer.exe,
        bin!("lb-http").to_str().expect("a UTF-8 path"),
        "the file at the path it was started from"
    );
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(stop.stdout, "stopping lbhttp\nstopped lbhttp exit code 0\n");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    wait_gone(child, "the child");
    assert!(!env.socket("lbhttp").exists(), "the socket is removed");
}

#[test]
fn without_the_switch_linux_keeps_its_own_paths() {
    let env = Env::new();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let child = sup.child_pid();
    assert_eq!(channel_type(child), "0005", "a seqpacket channel");
    assert!(
        comm(child).chars().all(|c| c.is_ascii_digit()),
        "run through /proc/self/fd/N: {}",
        comm(child)
    );
    assert!(holds_pidfd(sup.pid()), "a pidfd for the child");
}

#[test]
fn a_sync_main_works_on_a_stream_channel() {
    let env = Env::portable();
    let sup = env.start(bin!("lb-sync"), NO_ARGS);
    let child = sup.child_pid();
    assert_eq!(channel_type(child), "0001");
    assert_eq!(get(sup.addr("http")).expect("GET").pid, child);
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
}

/// Client threads, each sending one request a connection until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    pids: Arc<Mutex<BTreeSet<u32>>>,
    threads: Vec<JoinHandle<()>>,
}

/// The pause between two requests of a client: it paces the load on a shared two-core
/// machine. It is not a wait for anything.
const PACE: Duration = Duration::from_millis(2);

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let pids = Arc::new(Mutex::new(BTreeSet::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, failures, pids) = (stop.clone(), failures.clone(), pids.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let answer = http_get(addr).map(|body| {
                            Answer::parse(&body).ok_or_else(|| format!("unexpected body {body:?}"))
                        });
                        match answer {
                            Ok(Ok(answer)) => {
                                lock(&pids).insert(answer.pid);
                            }
                            Ok(Err(e)) => lock(&failures).push(e),
                            Err(e) => lock(&failures).push(e.to_string()),
                        }
                        std::thread::sleep(PACE);
                    }
                })
            })
            .collect();
        Load {
            stop,
            failures,
            pids,
            threads,
        }
    }

    /// Waits until `pid` has answered, failing at once on a failed request.
    fn wait_for_pid(&self, sup: &Supervisor<'_>, pid: u32) {
        sup.wait_for(&format!("pid {pid} to answer the load"), || {
            let failures = lock(&self.failures);
            assert!(failures.is_empty(), "failed requests: {failures:#?}");
            lock(&self.pids).contains(&pid).then_some(())
        });
    }

    /// Stops the clients: the failures and the pids that answered.
    fn finish(mut self) -> (Vec<String>, BTreeSet<u32>) {
        self.stop_threads();
        let failures = std::mem::take(&mut *lock(&self.failures));
        (failures, lock(&self.pids).clone())
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The new child's pid from a `reload` that succeeded (`reloading lbhttp`, then
/// `reloaded lbhttp: pid OLD -> NEW in N ms`).
fn reloaded(outcome: &Outcome, old: u32) -> u32 {
    assert_eq!(outcome.code(), Some(0), "{outcome}");
    let prefix = format!("reloaded lbhttp: pid {old} -> ");
    outcome
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("not a reload from pid {old}: {outcome}"))
}

#[test]
fn reload_under_load_loses_no_request() {
    let env = Env::portable();
    let copies = [
        env.copy_binary(bin!("lb-http"), "one"),
        env.copy_binary(bin!("lb-http"), "two"),
    ];
    let sup = env.start(&copies[0], NO_ARGS);
    let mut pids = vec![sup.child_pid()];
    let load = Load::start(sup.addr("http"), 3);
    load.wait_for_pid(&sup, pids[0]);
    for i in 1..=3 {
        let copy = &copies[i % 2];
        let old = pids[pids.len() - 1];
        let new = reloaded(&env.run(copy, &["--littleboss=reload"]), old);
        sup.track(new);
        assert_eq!(channel_type(new), "0001");
        load.wait_for_pid(&sup, new);
        pids.push(new);
    }
    let (failures, answered) = load.finish();
    assert!(
        failures.is_empty(),
        "failed requests: {failures:#?}\n{}",
        sup.logs()
    );
    assert_eq!(answered, pids.iter().copied().collect::<BTreeSet<u32>>());
    let status = sup.status();
    assert_eq!(status["reloads"], 3, "{status}");
    assert_eq!(status["failures"], 0, "{status}");
    let last = pids[pids.len() - 1];
    for old in &pids[..pids.len() - 1] {
        wait_gone(*old, "an old child");
    }
    assert_eq!(children_of(sup.pid()), vec![last]);
}

#[test]
fn a_child_killed_by_a_signal_is_seen() {
    let env = Env::portable();
    let sup = env.start(bin!("lb-http"), NO_ARGS);
    let child = sup.child_pid();
    littleboss_tests::kill(child);
    assert_eq!(sup.wait_code(), 1, "{}", sup.logs());
    assert!(
        sup.stderr()
            .contains(&format!("child pid {child} was killed by signal 9")),
        "{}",
        sup.logs()
    );
    assert!(!env.socket("lbhttp").exists(), "the socket is removed");
}

#[test]
fn a_child_exiting_on_its_own_ends_the_supervisor_with_its_code() {
    let env = Env::portable();
    let sup = env.start_nowait(bin!("lb-http"), &["--crash-after-ms=300"]);
    assert_eq!(sup.wait_code(), 4, "{}", sup.logs());
    assert_eq!(children_of(sup.pid()), Vec::<u32>::new());
}

/// Run by path, a file is run only while its path holds it: the fallback to a binary
/// whose file was replaced is refused with the reason, where Linux would run the file
/// it kept open.
#[test]
fn a_replaced_binary_is_not_run_by_its_path() {
    let env = Env::portable();
    let first = env.copy_binary(bin!("lb-http"), "first");
    let second = env.copy_binary(bin!("lb-http"), "second");
    let sup = env.start(&first, NO_ARGS);
    let old = sup.child_pid();
    // Another file at the first binary's path (a deploy), then a reload to a binary
    // that crashes once ready, so that the supervisor falls back to the first one.
    let replacement = env.path().join("replacement");
    copy_binary(bin!("lb-http"), &replacement);
    std::fs::rename(&replacement, &first).expect("replace the first binary");
    let outcome = env.run(
        &second,
        &["--littleboss=reload", "--", "--crash-after-ms=500"],
    );
    let new = reloaded(&outcome, old);
    sup.track(new);
    let shown = first.display();
    sup.wait_for_log(&format!(
        "cannot start {shown}: {shown} was replaced since it was opened; on linux a program is run by its path"
    ));
    assert!(!sup.stderr().contains("panicked"), "{}", sup.logs());
}

#[test]
fn a_stream_channel_is_refused_when_its_peer_is_not_the_parent() {
    // The child's checks hold for a stream channel as for a seqpacket one: this
    // process made the pair, but `sh` is lb-http's parent.
    let env = Env::portable();
    let (_ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::empty(),
        None,
    )
    .expect("socketpair");
    let raw = theirs.as_raw_fd();
    let mut command = env.command(Path::new("/bin/sh"));
    command
        .args(["-c", &format!("{}; exit $?", bin!("lb-http").display())])
        .env("LITTLEBOSS_CHANNEL_FD", raw.to_string());
    let outcome = run_for(command, COMMAND_TIMEOUT);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "LITTLEBOSS_CHANNEL_FD={raw} is not a littleboss channel (its peer is pid {}",
            std::process::id()
        )),
        "{outcome}"
    );
}
