//! A log reader that stalls does not stall the supervisor: with its stderr a FIFO that
//! is held open and never read (a 4 KiB pipe), reloads, `status` and `stop` are
//! answered as ever, and once the reader reads again, the log catches up.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use littleboss_tests::{Env, NO_ARGS, bin, get};
use rustix::fs::{FileType, Mode};

/// How long one reload or status may take here; they take well under a second.
const PROMPT: Duration = Duration::from_secs(10);

/// A FIFO at `path`, opened read-write (so that neither end waits for the other) with a
/// pipe of 4 KiB: the supervisor's stderr, which this test never reads.
fn stalled_fifo(path: &Path) -> File {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::Fifo,
        Mode::RUSR | Mode::WUSR,
        0,
    )
    .expect("mkfifo");
    let fifo = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the FIFO");
    rustix::pipe::fcntl_setpipe_size(&fifo, 4096).expect("F_SETPIPE_SZ");
    fifo
}

#[test]
fn an_unread_stderr_stalls_no_reload_status_or_stop() {
    let env = Env::new();
    let path = env.path().join("stderr.fifo");
    let fifo = stalled_fifo(&path);
    let stderr = fifo.try_clone().expect("dup the FIFO");
    let sup = env.start_with_stderr(bin!("lb-silent"), NO_ARGS, Some(stderr.into()));
    sup.wait_running();
    let mut pids = vec![sup.child_pid()];
    for i in 1..=40 {
        let t0 = Instant::now();
        let reload = sup.run(&["--littleboss=reload"]);
        assert_eq!(reload.code(), Some(0), "reload {i}: {reload}");
        assert!(t0.elapsed() < PROMPT, "reload {i} took {:?}", t0.elapsed());
        pids.push(sup.child_pid());
    }
    let t0 = Instant::now();
    let status = sup.status();
    assert!(t0.elapsed() < PROMPT, "status took {:?}", t0.elapsed());
    assert_eq!(status["reloads"], 40, "{status}");
    assert_eq!(get(sup.addr("http")).expect("GET").pid, sup.child_pid());
    // The reader comes back: the count of the lines dropped meanwhile follows.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        let mut reader = File::open(&path).expect("open the FIFO to read");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                seen.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    // Nothing was lost on the way (the queue holds more than 40 reloads' lines; a full
    // queue drops lines and counts them, see `log_queue`'s tests): the log catches up.
    let last = format!("reloaded: pid {} -> {} in ", pids[39], pids[40]);
    sup.wait_for("the log to catch up", || {
        shown().contains(&last).then_some(())
    });
    assert!(!shown().contains("dropped"), "{}", shown());
    let t0 = Instant::now();
    let stop = sup.run(&["--littleboss=stop"]);
    assert_eq!(stop.code(), Some(0), "{stop}");
    assert!(t0.elapsed() < PROMPT, "stop took {:?}", t0.elapsed());
    assert_eq!(sup.wait_code(), 0);
    // Every writer is gone once this test's own end is closed: the reader ends.
    drop(fifo);
    reader.join().expect("the reader");
    assert!(shown().contains("stopped, exit code 0"), "{}", shown());
}
