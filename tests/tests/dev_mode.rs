//! Dev mode (`--littleboss=dev`): a supervisor that reloads to every build that lands at
//! its executable's path, whichever way it lands, and that a broken build never takes
//! down. Every test keeps a light load on the service throughout, and no request may
//! fail.
//!
//! The builds are the helper programs of service `lbdev`: `lb-dev` serves,
//! `lb-dev-exit` fails at start, `lb-dev-crash` is ready and then crashes; and, once, a
//! real `cargo build` of a crate the test writes.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use littleboss_tests::{
    Env, NO_ARGS, POLL, Signal, Supervisor, bin, copy_binary, get, http_get, is_gone, run_for,
    wait_for,
};

/// The pause between two requests of the load.
const LOAD_PACE: Duration = Duration::from_millis(20);

/// The load never sends more than this many requests, nor for longer than this.
const LOAD_MAX_REQUESTS: usize = 20_000;
const LOAD_MAX_TIME: Duration = Duration::from_secs(600);

/// How long a `cargo build` of the test's crate may take: the first one builds
/// littleboss and its dependencies from nothing, on a loaded two-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);

/// How long the test looks at a half-written build: several of the watch's quiet
/// periods (200 ms each).
const HALF_WRITTEN_FOR: Duration = Duration::from_millis(1500);

/// One request every [`LOAD_PACE`] on a thread, until [`Load::finish`]; every failure
/// is kept.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Tally>>,
}

/// What the load saw.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    failed: Vec<String>,
    bodies: Vec<String>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut tally = Tally::default();
            let began = Instant::now();
            while !flag.load(Ordering::Relaxed)
                && tally.ok + tally.failed.len() < LOAD_MAX_REQUESTS
                && began.elapsed() < LOAD_MAX_TIME
            {
                match http_get(addr) {
                    Ok(body) => {
                        tally.ok += 1;
                        if tally.bodies.last() != Some(&body) {
                            tally.bodies.push(body);
                        }
                    }
                    Err(e) => tally.failed.push(format!("{:?}: {e}", began.elapsed())),
                }
                std::thread::sleep(LOAD_PACE);
            }
            tally
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the load and panics, with what it saw and `logs`, if a request failed.
    fn finish(mut self, logs: &str) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let tally = self
            .thread
            .take()
            .expect("the load's thread")
            .join()
            .expect("the load's thread panicked");
        assert!(
            tally.failed.is_empty() && tally.ok > 0,
            "requests failed under load: {tally:?}\n{logs}"
        );
        tally
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts a dev supervisor running a copy of `lb-dev` at `<tmp>/build/lbdev`, the path
/// the test lands builds at, and returns it with that path.
fn start(env: &Env) -> (Supervisor<'_>, PathBuf) {
    let dir = env.path().join("build");
    std::fs::create_dir(&dir).expect("create the build directory");
    let path = dir.join("lbdev");
    copy_binary(bin!("lb-dev"), &path);
    let sup = env.start_dev(&path, bin!("lb-dev"));
    sup.wait_for_log("dev: watching ");
    (sup, path)
}

/// Lands `build` at `path` as a file renamed over it.
fn land_by_rename(build: &Path, path: &Path) {
    let staged = path.with_file_name(".lbdev.tmp");
    copy_binary(build, &staged);
    std::fs::rename(&staged, path).expect("rename the build over the path");
}

/// Lands `build` at `path` as cargo does: the old file removed, the new one hard-linked
/// in from elsewhere (as `name`, under the test's directory).
fn land_by_link(env: &Env, build: &Path, path: &Path, name: &str) {
    let staged = env.path().join(name);
    copy_binary(build, &staged);
    std::fs::remove_file(path).expect("remove the old build");
    std::fs::hard_link(&staged, path).expect("link the new build in");
}

/// Waits for `dev: new build ready, pid OLD -> NEW` (or `pid NEW`, with no `old`) and
/// returns NEW.
fn wait_new_build(sup: &Supervisor<'_>, old: Option<u32>) -> u32 {
    let prefix = match old {
        Some(old) => format!("dev: new build ready, pid {old} -> "),
        None => "dev: new build ready, pid ".to_string(),
    };
    let line = sup.wait_for(&format!("{prefix:?} on the supervisor's stderr"), || {
        sup.stderr()
            .lines()
            .filter_map(|line| line.split_once(&prefix).map(|(_, rest)| rest.to_string()))
            .find(|rest| old.is_some() || !rest.contains(" -> "))
    });
    let pid = line.split_whitespace().next().unwrap_or_default();
    pid.parse()
        .unwrap_or_else(|e| panic!("bad pid in {line:?}: {e}\n{}", sup.logs()))
}

/// Waits until requests are answered by `pid`, the new build: the old one may take a
/// connection or two from the shared queue before its lameduck reaches it.
fn served_by(sup: &Supervisor<'_>, addr: SocketAddr, pid: u32) {
    sup.wait_for(&format!("requests answered by pid {pid}"), || {
        (get(addr).expect("GET").pid == pid).then_some(())
    });
}

/// How many `dev: new build` lines the supervisor has written.
fn build_lines(sup: &Supervisor<'_>) -> usize {
    sup.stderr()
        .lines()
        .filter(|line| line.contains(": dev: new build "))
        .count()
}

/// Checks `condition` every [`POLL`] for `period`, and panics, naming `what`, the first
/// time it does not hold.
fn holds_for(period: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert!(condition(), "{what} stopped holding");
        std::thread::sleep(POLL);
    }
}

/// A process of the test (a writer, a command), killed and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_build_renamed_over_the_path_reloads() {
    let env = Env::new();
    let (sup, path) = start(&env);
    let old = sup.child_pid();
    let load = Load::start(sup.addr("http"));
    land_by_rename(bin!("lb-dev"), &path);
    let new = wait_new_build(&sup, Some(old));
    served_by(&sup, sup.addr("http"), new);
    load.finish(&sup.logs());
    let status = sup.status();
    assert_eq!(status["reloads"], 1, "{status}");
    assert_eq!(build_lines(&sup), 1, "one build, one line\n{}", sup.logs());
}

#[test]
fn a_build_removed_and_hard_linked_in_reloads() {
    let env = Env::new();
    let (sup, path) = start(&env);
    let old = sup.child_pid();
    let load = Load::start(sup.addr("http"));
    land_by_link(&env, bin!("lb-dev"), &path, "lbdev-2");
    let second = wait_new_build(&sup, Some(old));
    land_by_link(&env, bin!("lb-dev"), &path, "lbdev-3");
    let third = wait_new_build(&sup, Some(second));
    served_by(&sup, sup.addr("http"), third);
    load.finish(&sup.logs());
    assert_eq!(sup.status()["reloads"], 2);
    assert_eq!(build_lines(&sup), 2, "{}", sup.logs());
}

#[test]
fn a_slow_write_reloads_only_once_the_file_is_complete() {
    slow_write(&[]);
}

/// A build whose data is at the path before any event there says it is being written
/// (linked in while its writer is not done, as a first `write()` longer than the quiet
/// period looks): it waits for its writer, and is never a failed build.
#[test]
fn a_build_linked_in_before_its_writer_is_done_reloads_only_once_it_is_complete() {
    slow_write(&["--link"]);
}

/// A builder that writes the binary in place in two parts, closing it between them:
/// the half that is closed is not a complete executable, and is not started.
#[test]
fn a_build_written_in_place_in_two_parts_starts_only_once_whole() {
    slow_write(&["--two-parts"]);
}

/// `lb-slow-write ARGS` writes the next build at the path, slowly: no reload, and no
/// failure, until it is complete; then one reload.
fn slow_write(args: &[&str]) {
    let env = Env::new();
    let (sup, path) = start(&env);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let load = Load::start(addr);
    std::fs::remove_file(&path).expect("remove the old build");
    let mut writer = Guard(
        Command::new(bin!("lb-slow-write"))
            .args(args)
            .arg(bin!("lb-dev"))
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start lb-slow-write"),
    );
    let mut stdin: ChildStdin = writer.0.stdin.take().expect("its stdin");
    let mut line = String::new();
    BufReader::new(writer.0.stdout.take().expect("its stdout"))
        .read_line(&mut line)
        .expect("read from lb-slow-write");
    assert_eq!(line, "half\n");
    holds_for(
        HALF_WRITTEN_FOR,
        "no reload while the build is half written",
        || {
            let status = sup.status();
            build_lines(&sup) == 0 && status["reloads"] == 0 && status["failures"] == 0
        },
    );
    assert_eq!(get(addr).expect("GET").pid, old);
    stdin
        .write_all(b"go\n")
        .expect("tell lb-slow-write to finish");
    drop(stdin);
    let status = wait_for(Duration::from_secs(20), "lb-slow-write to finish", || {
        writer.0.try_wait().expect("wait for lb-slow-write")
    });
    assert!(status.success(), "lb-slow-write: {status}");
    let new = wait_new_build(&sup, Some(old));
    served_by(&sup, addr, new);
    load.finish(&sup.logs());
    let status = sup.status();
    assert_eq!(
        (status["reloads"].as_u64(), status["failures"].as_u64()),
        (Some(1), Some(0)),
        "{}",
        sup.logs()
    );
}

#[test]
fn a_build_that_exits_at_once_or_is_another_service_leaves_the_old_one_serving() {
    let env = Env::new();
    let (sup, path) = start(&env);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let load = Load::start(addr);

    land_by_rename(bin!("lb-dev-exit"), &path);
    let line = sup.wait_for_log("dev: new build pid ");
    // The panic is quoted, with its place.
    let (_, pid) = line.split_once("dev: new build pid ").expect("the prefix");
    let pid = pid.split_whitespace().next().expect("a pid");
    assert!(
        line.ends_with(&format!(
            " exited with code 101 before it was ready (its main panicked at tests/src/bin/lb-dev-exit.rs:6:5: lb-dev-exit: pid {pid} fails at start); still serving pid {old}"
        )),
        "{line}\n{}",
        sup.logs()
    );
    assert_eq!(get(addr).expect("GET").pid, old);

    land_by_link(&env, bin!("lb-http"), &path, "lbhttp");
    let line = sup.wait_for_log("is service \"lbhttp\"");
    assert!(
        line.ends_with(&format!(
            "was killed before it was ready: it is service \"lbhttp\", not \"lbdev\"; still serving pid {old}"
        )),
        "{line}\n{}",
        sup.logs()
    );
    assert_eq!(get(addr).expect("GET").pid, old);

    land_by_rename(bin!("lb-dev"), &path);
    let new = wait_new_build(&sup, Some(old));
    served_by(&sup, addr, new);
    load.finish(&sup.logs());
    let status = sup.status();
    assert_eq!(
        (status["reloads"].as_u64(), status["failures"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(build_lines(&sup), 3, "{}", sup.logs());
}

#[test]
fn a_crash_keeps_the_session_and_the_next_build_serves_then_ctrl_c_stops_it() {
    let env = Env::new();
    let (sup, path) = start(&env);
    let old = sup.child_pid();
    let addr = sup.addr("http");
    let load = Load::start(addr);

    land_by_rename(bin!("lb-dev-crash"), &path);
    let crash = wait_new_build(&sup, Some(old));
    let line = sup.wait_for_log(&format!(
        "dev: child pid {crash} exited with code 101 after "
    ));
    assert!(
        line.ends_with("; the listeners stay open, waiting for the next build"),
        "{line}"
    );
    let status = sup.status();
    assert_eq!(status["state"], "idle", "{status}");
    assert!(status["child_pid"].is_null(), "{status}");
    assert!(
        sup.try_exit().is_none(),
        "the session goes on\n{}",
        sup.logs()
    );
    wait_for(Duration::from_secs(20), "the crashed build's exit", || {
        is_gone(crash).then_some(())
    });

    // Connections made meanwhile wait in the queue, for the next build.
    land_by_link(&env, bin!("lb-dev"), &path, "lbdev-fixed");
    let fixed = wait_new_build(&sup, None);
    served_by(&sup, addr, fixed);
    load.finish(&sup.logs());
    assert_eq!(sup.status()["state"], "running");

    // Ctrl-C stops everything.
    sup.signal(Signal::INT);
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());
    wait_for(Duration::from_secs(20), "the child to be gone", || {
        is_gone(fixed).then_some(())
    });
    sup.wait_for_log("stopped, exit code 0");
}

/// `cargo clean` removes the directory the running build is in; the next build makes it
/// again, and is watched.
#[test]
fn a_build_directory_removed_and_made_again_is_watched_again() {
    let env = Env::new();
    let (sup, path) = start(&env);
    let old = sup.child_pid();
    let load = Load::start(sup.addr("http"));
    let dir = path.parent().expect("the build directory");
    std::fs::remove_dir_all(dir).expect("remove the build directory");
    sup.wait_for_log("is gone; watching it again once it is back");
    std::fs::create_dir(dir).expect("make the build directory again");
    sup.wait_for_log("again for new builds of lbdev");
    land_by_rename(bin!("lb-dev"), &path);
    let new = wait_new_build(&sup, Some(old));
    served_by(&sup, sup.addr("http"), new);
    load.finish(&sup.logs());
}

/// `Cargo.toml` of the crate a real build makes: littleboss by path, nothing else but
/// tokio.
fn manifest(root: &Path) -> String {
    format!(
        r#"[package]
name = "devapp"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
littleboss = {{ path = "{}" }}
tokio = {{ version = "1", features = ["rt-multi-thread", "macros", "net", "io-util"] }}

[workspace]
"#,
        root.join("littleboss").display()
    )
}

/// `src/main.rs` of that crate: it answers `devapp BUILD pid PID`, and finishes the
/// connections it accepted at lameduck.
fn main_rs(build: &str) -> String {
    format!(
        r#"const BUILD: &str = "{build}";

#[littleboss::main(name = "devapp", listener(http = "tcp:127.0.0.1:0"), calls_ready = true)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {{
    use tokio::io::{{AsyncReadExt, AsyncWriteExt}};
    let listener = lb.tcp_listener("http")?;
    lb.ready();
    let body = format!("devapp {{BUILD}} pid {{}}\n", std::process::id());
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {{}}\r\nConnection: close\r\n\r\n{{body}}",
        body.len()
    );
    let mut connections = tokio::task::JoinSet::new();
    loop {{
        tokio::select! {{
            _ = lb.lameduck() => break,
            accepted = listener.accept() => {{
                let Ok((mut stream, _)) = accepted else {{ continue }};
                let response = response.clone();
                connections.spawn(async move {{
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {{
                        match stream.read(&mut buf).await {{
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }}
                    }}
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }});
            }}
            Some(_) = connections.join_next(), if !connections.is_empty() => {{}}
        }}
    }}
    drop(listener);
    while connections.join_next().await.is_some() {{}}
    Ok(())
}}
"#
    )
}

/// `cargo build --offline` of the crate at `app` into `target`; panics with its output
/// if it fails.
fn cargo_build(app: &Path, target: &Path) {
    let mut command = littleboss_tests::lean_cargo();
    command
        .args(["build", "--offline", "--quiet"])
        .current_dir(app)
        .env("CARGO_TARGET_DIR", target);
    let outcome = run_for(command, BUILD_TIMEOUT);
    assert_eq!(outcome.code(), Some(0), "cargo build failed: {outcome}");
}

/// The workflow of the README: a dev supervisor runs `target/debug/NAME`, and a plain
/// `cargo build` in another terminal replaces it. First, the same program (built on
/// its own, as a user builds it, without littleboss's test hooks) is started with a
/// test variable in its environment, which it ignores.
#[test]
fn a_cargo_build_reloads_to_the_new_code() {
    let env = Env::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let app = env.path().join("devapp");
    std::fs::create_dir_all(app.join("src")).expect("create the crate");
    std::fs::write(app.join("Cargo.toml"), manifest(root)).expect("write Cargo.toml");
    std::fs::write(app.join("src/main.rs"), main_rs("one")).expect("write main.rs");
    // The workspace's versions, which are in cargo's cache: the build needs no network.
    std::fs::copy(root.join("Cargo.lock"), app.join("Cargo.lock")).expect("copy Cargo.lock");
    let target = env.path().join("target");
    cargo_build(&app, &target);
    let exe = target.join("debug/devapp");

    let sup = env.start_with(&exe, NO_ARGS, &[("LITTLEBOSS_TEST_PROTOCOLS", "1")]);
    sup.wait_running();
    let status = env.status_json(&exe);
    let full = [littleboss::OLDEST_PROTOCOL, littleboss::PROTOCOL];
    assert_eq!(status["protocols"], serde_json::json!(full), "{status}");
    assert!(!sup.logs().contains("test hooks"), "{}", sup.logs());
    let stopped = env.run(&exe, &["--littleboss=stop"]);
    assert_eq!(stopped.code(), Some(0), "{stopped}");
    assert_eq!(sup.wait_code(), 0, "{}", sup.logs());

    let sup = env.start_dev(&exe, &exe);
    sup.wait_for_log("dev: watching ");
    let addr = sup.addr("http");
    let first = sup.child_pid();
    let body = http_get(addr).expect("GET");
    assert_eq!(body, format!("devapp one pid {first}\n"));

    let load = Load::start(addr);
    std::fs::write(app.join("src/main.rs"), main_rs("two")).expect("write main.rs");
    cargo_build(&app, &target);
    let second = wait_new_build(&sup, Some(first));
    let two = format!("devapp two pid {second}\n");
    sup.wait_for("requests answered by the new code", || {
        (http_get(addr).expect("GET") == two).then_some(())
    });
    load.finish(&sup.logs());
    assert_eq!(build_lines(&sup), 1, "{}", sup.logs());
}
