//! The supervisor's metrics: `GET /metrics` on the listener named by `metrics = "NAME"`
//! (OpenMetrics, or the Prometheus text format when asked for `text/plain`; anything
//! else 404; a request head too large 431, counted), the HTTP helpers' counts by status
//! class, which never go back across reloads and an upgrade, a listener the child cannot
//! take (supervised or not), a listener turned off (`--littleboss=metrics` still
//! prints), and, run on purpose (`-- --ignored`, as `.ci/run` does), `promtool` on the
//! exposition and a real Prometheus scraping through reloads and an upgrade.
//!
//! Helper program: `lb-metrics` (service `lbmetrics`, or `--name=NAME`; see its module
//! docs). The tests that upgrade keep the default name: the upgrade's probe runs the
//! new binary without arguments, so it names itself `lbmetrics` whatever the
//! supervisor's child was told.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use littleboss_tests::release_support::assert_ok;
use littleboss_tests::reload_support::KeepAlive;
use littleboss_tests::{
    COMMAND_TIMEOUT, Env, HTTP_TIMEOUT, NO_ARGS, Outcome, Supervisor, Value, bin, copy_binary,
    free_port, port_is_free, run_for, socket_inodes,
};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A client of service `name`: a script in `env` that runs `lb-metrics` with the
/// arguments it is given and `--name=NAME` (a reload's `-- ARGS` get it too, so the new
/// child is the same service). Written elsewhere and copied into place by `cp`, so that
/// no process of this test ever holds it open for writing (see [`copy_binary`]).
fn client(env: &Env, name: &str) -> PathBuf {
    let source = env.path().join(format!("{name}.sh.in"));
    let script = format!(
        "#!/bin/sh\nexec '{}' \"$@\" --name={name}\n",
        bin!("lb-metrics").display()
    );
    std::fs::write(&source, script).expect("write the client script");
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let target = env.path().join(name);
    copy_binary(&source, &target);
    target
}

/// Starts `lb-metrics --name=NAME ARGS` and waits until its child is ready; its client
/// commands run [`client`].
fn start_named<'e>(env: &'e Env, name: &str, args: &[&str]) -> Supervisor<'e> {
    let mut all = vec![format!("--name={name}")];
    all.extend(args.iter().map(|a| a.to_string()));
    let sup = env
        .start_with(bin!("lb-metrics"), &all, &[])
        .with_client(&client(env, name));
    sup.wait_running();
    sup
}

/// An HTTP response read to the end of its connection.
#[derive(Debug)]
struct Http {
    status: u16,
    head: String,
    body: String,
}

impl Http {
    /// The value of header `name`, if it is there.
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// Sends `request` on a new connection to `addr` and reads the answer until the server
/// closes the connection.
fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<Http> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    stream.write_all(request)?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid(format!("incomplete response from {addr}: {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("no status in {head:?}")))?;
    let response = Http {
        status,
        head: head.to_string(),
        body: body.to_string(),
    };
    if let Some(length) = response.header("content-length")
        && length.parse() != Ok(response.body.len())
    {
        return Err(invalid(format!("a short body: {response:?}")));
    }
    Ok(response)
}

/// `GET PATH` on a new connection (`Connection: close`), with `Accept: ACCEPT` if given.
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> io::Result<Http> {
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n");
    exchange(addr, request.as_bytes())
}

/// `GET /metrics` in the Prometheus text format; panics unless it is answered 200.
fn scrape(addr: SocketAddr) -> String {
    let response = get(addr, "/metrics", Some("text/plain"))
        .unwrap_or_else(|e| panic!("GET /metrics on {addr}: {e}"));
    assert_eq!(response.status, 200, "{response:?}");
    response.body
}

/// The samples of an exposition: series (`name{labels}`) to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|e| panic!("not a value ({e}): {line:?}"));
            (series.to_string(), value)
        })
        .collect()
}

/// The value of `series` in `samples`; panics if it is not there.
fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

/// `littleboss_http_requests_total{listener="http",code=CLASS}`.
fn requests(samples: &BTreeMap<String, f64>, class: &str) -> f64 {
    value(
        samples,
        &format!("littleboss_http_requests_total{{listener=\"http\",code=\"{class}\"}}"),
    )
}

/// `--littleboss=metrics` of the supervisor, parsed.
fn metrics_command(sup: &Supervisor<'_>) -> BTreeMap<String, f64> {
    let outcome = sup.run(&["--littleboss=metrics"]);
    assert_ok(sup, "metrics", &outcome);
    samples(&outcome.stdout)
}

/// Whether `series` only ever goes up: a counter, or a histogram's count, sum or bucket.
fn never_goes_back(series: &str) -> bool {
    let name = series.split('{').next().unwrap_or(series);
    ["_total", "_count", "_sum", "_bucket"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// `GET PATH` on the program's listener; the status.
fn ask(addr: SocketAddr, path: &str) -> u16 {
    get(addr, path, None)
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
        .status
}

/// Sends `n` requests for `path` to `addr`, each answered `status`.
fn send(addr: SocketAddr, path: &str, n: usize, status: u16) {
    for _ in 0..n {
        assert_eq!(ask(addr, path), status, "GET {path}");
    }
}

/// Waits until the metrics at `metrics` show `2xx` and `5xx` answers on `http` at
/// least (children report every 100 ms), then checks they are exactly that.
fn wait_counted(sup: &Supervisor<'_>, metrics: SocketAddr, ok: f64, failed: f64) {
    let seen = sup.wait_for(&format!("{ok} 2xx and {failed} 5xx counted"), || {
        let seen = samples(&scrape(metrics));
        (requests(&seen, "2xx") >= ok && requests(&seen, "5xx") >= failed).then_some(seen)
    });
    assert_eq!(
        (requests(&seen, "2xx"), requests(&seen, "5xx")),
        (ok, failed),
        "{seen:#?}"
    );
}

/// The TCP addresses process `pid` listens on (its sockets in state LISTEN, from
/// `/proc/net/tcp`).
fn listening(pid: u32) -> Vec<SocketAddr> {
    let inodes = socket_inodes(pid);
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let mut found: Vec<SocketAddr> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = fields.get(9)?.parse().ok()?;
            if fields.get(3) != Some(&"0A") || !inodes.contains(&inode) {
                return None;
            }
            let (ip, port) = fields.get(1)?.split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            // The address is in the kernel's byte order (little-endian here).
            let ip = Ipv4Addr::from(ip.swap_bytes());
            Some(SocketAddr::from((ip, port)))
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[test]
fn get_metrics_answers_openmetrics_or_the_text_format_and_refuses_the_rest() {
    let env = Env::new();
    let sup = start_named(&env, "lbmetricsget", &[]);
    let metrics = sup.addr("metrics");
    let info = format!(
        "littleboss_info{{littleboss_version=\"{}\",protocol=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        littleboss::PROTOCOL
    );

    let open = get(metrics, "/metrics", None).expect("GET /metrics");
    assert_eq!(open.status, 200, "{open:?}");
    assert_eq!(open.header("content-type"), Some(OPENMETRICS), "{open:?}");
    assert!(open.body.ends_with("# EOF\n"), "{open:?}");
    assert!(open.body.lines().any(|l| l == info), "{}", open.body);
    assert!(
        open.body
            .lines()
            .any(|l| l == "littleboss_children{state=\"serving\"} 1"),
        "{}",
        open.body
    );
    // What Prometheus asks for: OpenMetrics first.
    let prometheus = get(
        metrics,
        "/metrics",
        Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        ),
    )
    .expect("GET /metrics");
    assert_eq!(prometheus.status, 200, "{prometheus:?}");
    assert_eq!(prometheus.header("content-type"), Some(OPENMETRICS));

    let text = get(metrics, "/metrics", Some("text/plain")).expect("GET /metrics");
    assert_eq!(text.status, 200, "{text:?}");
    assert_eq!(text.header("content-type"), Some(TEXT_004), "{text:?}");
    assert!(!text.body.contains("# EOF"), "{text:?}");
    assert!(text.body.lines().any(|l| l == info), "{}", text.body);
    assert!(
        text.body
            .lines()
            .any(|l| l == "# TYPE littleboss_reloads_total counter"),
        "{}",
        text.body
    );
    assert_eq!(
        value(&samples(&text.body), "littleboss_generation"),
        1.0,
        "{}",
        text.body
    );

    for (method, path) in [("GET", "/"), ("GET", "/metrics/x"), ("POST", "/metrics")] {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let response = exchange(metrics, request.as_bytes()).expect("an answer");
        assert_eq!(response.status, 404, "{method} {path}: {response:?}");
    }

    // A request head over 8 KiB: 431, then counted.
    let padding = "x".repeat(9 * 1024);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: {padding}\r\n\r\n");
    let refused = exchange(metrics, request.as_bytes()).expect("an answer to a large head");
    assert_eq!(refused.status, 431, "{refused:?}");
    let seen = samples(&scrape(metrics));
    assert_eq!(
        value(
            &seen,
            "littleboss_metrics_refused_total{reason=\"too_large\"}"
        ),
        1.0,
        "{seen:#?}"
    );
    for reason in ["too_slow", "too_many"] {
        let series = format!("littleboss_metrics_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(value(&seen, &series), 0.0, "{seen:#?}");
    }
    // The command gives the same counts.
    let command = metrics_command(&sup);
    assert_eq!(
        value(
            &command,
            "littleboss_metrics_refused_total{reason=\"too_large\"}"
        ),
        1.0
    );
    assert_ok(&sup, "stop", &sup.run(&["--littleboss=stop"]));
}

/// Records in `problems` each sample of `before` that only goes up and went back, or
/// vanished, in `after`.
fn compare(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    problems: &mut Vec<String>,
) {
    for (series, was) in before.iter().filter(|(s, _)| never_goes_back(s)) {
        match after.get(series) {
            Some(is) if is >= was => {}
            is => problems.push(format!("{series}: {was} then {is:?}")),
        }
    }
}

/// Fetches the supervisor's metrics over and over until told to stop, and records
/// every sample that went back (or vanished) since the one before.
#[derive(Debug)]
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Watcher {
    fn start(metrics: SocketAddr) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut problems = Vec::new();
            let mut fetched = 0;
            let mut last: Option<BTreeMap<String, f64>> = None;
            while !flag.load(Ordering::Relaxed) {
                match get(metrics, "/metrics", Some("text/plain")) {
                    Ok(response) if response.status == 200 => {
                        fetched += 1;
                        let now = samples(&response.body);
                        if let Some(last) = &last {
                            compare(last, &now, &mut problems);
                        }
                        last = Some(now);
                    }
                    Ok(response) => problems.push(format!("GET /metrics: {response:?}")),
                    Err(e) => problems.push(format!("GET /metrics: {e}")),
                }
                // Pacing, so that the supervisor keeps some CPU for the rest.
                std::thread::sleep(Duration::from_millis(10));
            }
            (fetched, problems)
        });
        Watcher {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it: how many times it fetched the metrics, and what went wrong.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("running");
        thread.join().expect("the watcher thread")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn http_requests_are_counted_by_class_and_never_go_back_across_a_reload_and_an_upgrade() {
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-metrics"), "one");
    let two = env.copy_binary(bin!("lb-metrics"), "two");
    let sup = env.start(&one, NO_ARGS);
    let http = sup.addr("http");
    let metrics = sup.addr("metrics");
    let first = sup.child_pid();
    let started = value(
        &samples(&scrape(metrics)),
        "littleboss_supervisor_start_time_seconds",
    );
    let watcher = Watcher::start(metrics);

    send(http, "/", 7, 200);
    send(http, "/status/503", 2, 503);
    wait_counted(&sup, metrics, 7.0, 2.0);

    assert_ok(&sup, "reload", &env.run(&one, &["--littleboss=reload"]));
    let second = sup.child_pid();
    assert_ne!(second, first);
    let body = get(http, "/", None).expect("GET / after the reload").body;
    assert_eq!(body, format!("pid {second}\n"));
    send(http, "/", 2, 200);
    wait_counted(&sup, metrics, 10.0, 2.0);

    assert_ok(&sup, "upgrade", &env.run(&two, &["--littleboss=upgrade"]));
    let third = sup.child_pid();
    assert_ne!(third, second);
    let body = get(http, "/", None).expect("GET / after the upgrade").body;
    assert_eq!(body, format!("pid {third}\n"));
    send(http, "/", 3, 200);
    send(http, "/status/404", 1, 404);
    wait_counted(&sup, metrics, 14.0, 2.0);

    let (fetched, problems) = watcher.finish();
    assert!(problems.is_empty(), "{problems:#?}\n{}", sup.logs());
    assert!(fetched > 3, "the metrics were fetched {fetched} times");

    let seen = samples(&scrape(metrics));
    assert_eq!(requests(&seen, "4xx"), 1.0, "{seen:#?}");
    assert_eq!(requests(&seen, "1xx") + requests(&seen, "3xx"), 0.0);
    for (series, expected) in [
        (
            "littleboss_http_request_duration_seconds_count{listener=\"http\"}",
            17.0,
        ),
        ("littleboss_reloads_total{outcome=\"succeeded\"}", 2.0),
        ("littleboss_reloads_total{outcome=\"failed\"}", 0.0),
        ("littleboss_upgrades_total", 1.0),
        ("littleboss_generation", 3.0),
        ("littleboss_children{state=\"serving\"}", 1.0),
        ("littleboss_supervisor_start_time_seconds", started),
    ] {
        assert_eq!(value(&seen, series), expected, "{series}: {seen:#?}");
    }
    // The command reads the same counts (over the control socket).
    let command = metrics_command(&sup);
    assert_eq!(
        (requests(&command, "2xx"), requests(&command, "5xx")),
        (14.0, 2.0)
    );
    assert_ok(&sup, "stop", &env.run(&two, &["--littleboss=stop"]));
}

/// The error `lb-metrics --take-metrics` prints.
const TAKEN: &str =
    "lb-metrics: metrics listener: listener \"metrics\" is the supervisor's metrics listener";

#[test]
fn the_program_cannot_take_the_metrics_listener_supervised_or_in_bypass() {
    let env = Env::new();
    let sup = start_named(&env, "lbmetricstake", &["--take-metrics"]);
    let child = sup.child_pid();
    let said = sup.wait_for_log(TAKEN);
    assert!(
        !sup.stderr().contains("took the metrics listener"),
        "{}",
        sup.logs()
    );
    let (http, metrics) = (sup.addr("http"), sup.addr("metrics"));
    assert!(listening(sup.pid()).contains(&metrics), "{}", sup.logs());
    assert_eq!(
        listening(child),
        vec![http],
        "the child holds its own listener only"
    );
    assert_eq!(ask(http, "/"), 200);
    assert!(scrape(metrics).contains("littleboss_info{"));
    assert_ok(&sup, "stop", &sup.run(&["--littleboss=stop"]));

    // Plain, it is the same program: it does not get that listener, nor is it bound.
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let plain = env.spawn(
        bin!("lb-metrics"),
        &[
            "--take-metrics".to_string(),
            "--name=lbmetricsplain".to_string(),
            "--http=127.0.0.1:0".to_string(),
            format!("--metrics={metrics}"),
        ],
    );
    let line = plain.wait_for_log(TAKEN);
    assert_eq!(
        line.trim_end(),
        said.trim_end(),
        "the same error supervised and in bypass"
    );
    let http = plain.wait_for("its http listener", || {
        listening(plain.pid()).first().copied()
    });
    assert_eq!(
        listening(plain.pid()),
        vec![http],
        "one listener only\n{}",
        plain.logs()
    );
    let response = get(http, "/", None).expect("GET / in bypass");
    assert_eq!(
        (response.status, response.body),
        (200, format!("pid {}\n", plain.pid()))
    );
    assert!(port_is_free(metrics), "nothing listens on {metrics}");
    assert!(TcpStream::connect_timeout(&metrics, HTTP_TIMEOUT).is_err());
}

#[test]
fn an_empty_metrics_flag_turns_the_listener_off_and_the_command_still_prints() {
    let env = Env::new();
    let sup = start_named(&env, "lbmetricsoff", &["--metrics="]);
    let status = sup.status();
    assert_eq!(status["listeners"]["metrics"], "off", "{status}");
    let http = sup.addr("http");
    assert_eq!(listening(sup.pid()), vec![http], "{}", sup.logs());
    assert_eq!(listening(sup.child_pid()), vec![http], "{}", sup.logs());

    send(http, "/", 2, 200);
    let outcome = sup.wait_for("the requests counted", || {
        let outcome = sup.run(&["--littleboss=metrics"]);
        assert_ok(&sup, "metrics", &outcome);
        (requests(&samples(&outcome.stdout), "2xx") >= 2.0).then_some(outcome)
    });
    assert_eq!(requests(&samples(&outcome.stdout), "2xx"), 2.0);
    assert!(
        outcome.stdout.starts_with("# HELP littleboss_"),
        "{outcome}"
    );
    assert!(
        outcome
            .stdout
            .lines()
            .any(|l| l == "# TYPE littleboss_reloads_total counter"),
        "{outcome}"
    );
    assert!(!outcome.stdout.contains("# EOF"), "{outcome}");
    assert_eq!(outcome.stderr, "", "{outcome}");
    assert_ok(&sup, "stop", &sup.run(&["--littleboss=stop"]));
}

/// The program `name` of the Debian package prometheus, on `PATH`.
fn required(name: &str) -> PathBuf {
    littleboss_tests::required_tool(name, "prometheus")
}

/// Runs `promtool check metrics` on `exposition` (written to a file in `env`, `what`
/// names it) and panics with what it said unless it found nothing wrong.
fn promtool_check(env: &Env, promtool: &Path, what: &str, exposition: &str) {
    let file = env.path().join(format!(
        "{}.txt",
        what.replace(|c: char| !c.is_alphanumeric(), "-")
    ));
    std::fs::write(&file, exposition).expect("write the exposition");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("exec \"$0\" check metrics < \"$1\"")
        .arg(promtool)
        .arg(&file);
    let outcome = run_for(command, COMMAND_TIMEOUT);
    assert_eq!(
        (
            outcome.code(),
            outcome.stdout.as_str(),
            outcome.stderr.as_str()
        ),
        (Some(0), "", ""),
        "promtool check metrics on {what}: {outcome}\n--- the exposition ---\n{exposition}"
    );
}

#[test]
#[ignore = "needs prometheus"]
fn promtool_accepts_the_exposition() {
    let promtool = required("promtool");
    let env = Env::new();
    let sup = start_named(&env, "lbmetricslint", &[]);
    let (http, metrics) = (sup.addr("http"), sup.addr("metrics"));
    send(http, "/", 3, 200);
    send(http, "/status/404", 1, 404);
    send(http, "/status/503", 1, 503);
    assert_ok(&sup, "reload", &sup.run(&["--littleboss=reload"]));
    send(http, "/", 2, 200);
    wait_counted(&sup, metrics, 5.0, 1.0);

    let outcome: Outcome = sup.run(&["--littleboss=metrics"]);
    assert_ok(&sup, "metrics", &outcome);
    promtool_check(&env, &promtool, "the metrics command", &outcome.stdout);
    promtool_check(&env, &promtool, "GET /metrics", &scrape(metrics));
    assert_ok(&sup, "stop", &sup.run(&["--littleboss=stop"]));
}

/// A query string's value, percent-encoded.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server run by a test, and its HTTP API.
struct Prometheus {
    addr: SocketAddr,
}

impl Prometheus {
    /// `GET PATH` on its API (HTTP/1.0, so that the body is neither chunked nor kept
    /// alive): its status and its body parsed as JSON (`None` if it does not answer, or
    /// not with JSON: it is not ready yet).
    fn api(&self, path: &str) -> Option<(u16, Value)> {
        let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        let response = exchange(self.addr, request.as_bytes()).ok()?;
        let json = serde_json::from_str(&response.body).ok()?;
        Some((response.status, json))
    }

    /// An instant query: its result vector (each element a series and its value).
    fn query(&self, query: &str) -> Vec<Value> {
        let (status, answer) = self
            .api(&format!("/api/v1/query?query={}", encode(query)))
            .unwrap_or_else(|| panic!("Prometheus did not answer the query {query}"));
        assert_eq!(
            (status, &answer["status"]),
            (200, &Value::from("success")),
            "{query}: {answer}"
        );
        answer["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: no result in {answer}"))
            .clone()
    }

    /// The value of a query whose result is one series (`None` if it has none).
    fn scalar(&self, query: &str) -> Option<f64> {
        let result = self.query(query);
        assert!(result.len() <= 1, "{query}: {result:?}");
        let value = result.first()?["value"][1].as_str()?;
        Some(
            value
                .parse()
                .unwrap_or_else(|e| panic!("{query}: {value:?}: {e}")),
        )
    }
}

/// Sends requests to `addr` from two threads (new connections, and one kept alive)
/// until told to stop, counting those answered 200 exactly.
struct Traffic {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(addr: SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = [false, true]
            .into_iter()
            .map(|keep_alive| {
                let (stop, answered, failures) = (
                    Arc::clone(&stop),
                    Arc::clone(&answered),
                    Arc::clone(&failures),
                );
                std::thread::spawn(move || {
                    let fail = |what: String| {
                        let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
                        failures.push(what);
                    };
                    let mut kept: Option<KeepAlive> = None;
                    while !stop.load(Ordering::Relaxed) {
                        if keep_alive {
                            let connection = match kept.take() {
                                Some(connection) => Ok(connection),
                                None => KeepAlive::connect(addr),
                            };
                            match connection.and_then(|mut c| c.get().map(|r| (c, r))) {
                                Ok((connection, response)) if response.status == 200 => {
                                    answered.fetch_add(1, Ordering::Relaxed);
                                    if !response.close {
                                        kept = Some(connection);
                                    }
                                }
                                Ok((_, response)) => fail(format!("kept alive: {response:?}")),
                                Err(e) => fail(format!("kept alive: {e}")),
                            }
                        } else {
                            match get(addr, "/", None) {
                                Ok(response) if response.status == 200 => {
                                    answered.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(response) => fail(format!("new connection: {response:?}")),
                                Err(e) => fail(format!("new connection: {e}")),
                            }
                        }
                        // Pacing (a few hundred requests a second), not a wait.
                        std::thread::sleep(Duration::from_millis(3));
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            answered,
            failures,
            threads,
        }
    }

    /// Stops the threads: the requests answered 200, and what failed.
    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop_threads();
        let failures = std::mem::take(&mut *self.failures.lock().expect("failures"));
        (self.answered.load(Ordering::Relaxed), failures)
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[test]
#[ignore = "needs prometheus"]
fn a_real_prometheus_scrapes_through_reloads_and_an_upgrade() {
    let prometheus = required("prometheus");
    let env = Env::new();
    let one = env.copy_binary(bin!("lb-metrics"), "one");
    let two = env.copy_binary(bin!("lb-metrics"), "two");
    let sup = env.start(&one, NO_ARGS);
    let (http, metrics) = (sup.addr("http"), sup.addr("metrics"));

    let config = env.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: littleboss\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .expect("write the Prometheus configuration");
    let api = Prometheus {
        addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
    };
    let dir = |name: &str| {
        let dir = env.path().join(name);
        std::fs::create_dir_all(&dir).expect("create a directory");
        dir.display().to_string()
    };
    // Everything it writes or reads in the test's directory, its web interface on
    // loopback: it runs as any user.
    let server = env.spawn(
        &prometheus,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir("tsdb")),
            format!("--web.listen-address={}", api.addr),
            format!("--web.console.templates={}", dir("consoles")),
            format!("--web.console.libraries={}", dir("console_libraries")),
            "--log.level=warn".to_string(),
        ],
    );
    server.wait_for("Prometheus to be ready", || {
        assert!(
            server.try_exit().is_none(),
            "Prometheus exited\n{}",
            server.logs()
        );
        api.api("/api/v1/status/buildinfo")
            .filter(|(status, _)| *status == 200)
            .map(drop)
    });
    // Its first scrape of the supervisor (its discovery may take a few seconds).
    server.wait_for("the first scrape", || {
        (api.scalar("up{job=\"littleboss\"}") == Some(1.0)).then_some(())
    });

    let traffic = Traffic::start(http);
    sup.wait_for("the first requests counted", || {
        (requests(&metrics_command(&sup), "2xx") > 0.0).then_some(())
    });
    // Each step, then a scrape that saw it: the reloads, in the supervisor's count.
    let steps: [(&Path, &[&str]); 7] = [
        (&one, &["--littleboss=reload"]),
        (&one, &["--littleboss=reload"]),
        (&one, &["--littleboss=reload", "--", "--fail-start"]),
        (&two, &["--littleboss=upgrade"]),
        (&two, &["--littleboss=reload"]),
        (&two, &["--littleboss=reload"]),
        (&two, &["--littleboss=reload"]),
    ];
    for (bin, args) in steps {
        let outcome = env.run(bin, args);
        let code = if args.contains(&"--fail-start") { 1 } else { 0 };
        assert_eq!(outcome.code(), Some(code), "{args:?}: {outcome}");
        let seen = metrics_command(&sup);
        let done: f64 = seen
            .iter()
            .filter(|(series, _)| series.starts_with("littleboss_reloads_total{"))
            .map(|(_, value)| value)
            .sum();
        server.wait_for(&format!("Prometheus to see {done} reloads"), || {
            (api.scalar("sum(littleboss_reloads_total)") == Some(done)).then_some(())
        });
    }
    let (sent, failures) = traffic.finish();
    assert!(failures.is_empty(), "{failures:#?}\n{}", sup.logs());
    assert!(sent > 0);
    let sent = sent as f64;

    // Every child reports within 100 ms (and at its exit): the supervisor's count.
    sup.wait_for(&format!("{sent} requests counted"), || {
        let counted: f64 = metrics_command(&sup)
            .iter()
            .filter(|(series, _)| series.starts_with("littleboss_http_requests_total{"))
            .map(|(_, value)| value)
            .sum();
        assert!(counted <= sent, "{counted} counted, {sent} answered");
        (counted == sent).then_some(())
    });
    // Then a scrape that started after that.
    let counted_at = now();
    server.wait_for("a scrape after the last count", || {
        let scraped = api.scalar("timestamp(up{job=\"littleboss\"})")?;
        (scraped > counted_at).then_some(())
    });

    assert_eq!(
        api.scalar("sum(littleboss_http_requests_total)"),
        Some(sent),
        "{}",
        sup.logs()
    );
    let resets = api.query("resets(littleboss_http_requests_total[5m])");
    assert_eq!(resets.len(), 5, "one per status class: {resets:#?}");
    for series in &resets {
        assert_eq!(series["value"][1], "0", "{series}");
    }
    assert_eq!(
        api.scalar("sum(resets(littleboss_http_requests_total[5m]))"),
        Some(0.0)
    );
    // No counter of the supervisor's went back either (`resets` drops the name, so one
    // query per counter).
    let names = api.query("count by (__name__) ({__name__=~\"littleboss_.+_total\"})");
    assert!(names.len() >= 7, "{names:#?}");
    for name in &names {
        let name = name["metric"]["__name__"].as_str().expect("a name");
        for series in api.query(&format!("resets({name}[5m])")) {
            assert_eq!(series["value"][1], "0", "{name}: {series}");
        }
    }
    for (query, expected) in [
        ("littleboss_reloads_total{outcome=\"failed\"}", 1.0),
        ("littleboss_reloads_total{outcome=\"succeeded\"}", 6.0),
        ("littleboss_upgrades_total", 1.0),
        // The eighth child serves: the one that failed to start had the fourth number.
        ("littleboss_generation", 8.0),
    ] {
        assert_eq!(api.scalar(query), Some(expected), "{query}");
    }
    drop(server);
    assert_ok(&sup, "stop", &env.run(&two, &["--littleboss=stop"]));
}
