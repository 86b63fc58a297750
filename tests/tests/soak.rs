//! A short soak: the reload benchmark (`src/bin/reload-bench.rs`) on the `http` example,
//! 20 reloads under load. The benchmark exits 0 only when no request failed, every
//! reload meant to fail failed and every other one succeeded, the supervisor's open fds
//! did not change, and no zombie child is left. The same again with the supervisor's
//! stderr a pipe that nobody reads: its log must not stall it.

use std::process::Command;
use std::time::Duration;

use littleboss_tests::{bin, example, run_for};

/// How long the benchmark may take.
const BENCH_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn a_short_soak_under_reloads_fails_no_request_and_leaks_nothing() {
    soak(&[]);
}

#[test]
fn a_short_soak_with_an_unread_stderr_fails_no_request_and_leaks_nothing() {
    soak(&["--reloads", "30", "--stderr", "unread-fifo"]);
}

/// Runs the benchmark with `extra` flags and checks its report.
fn soak(extra: &[&str]) {
    let example = example!("http");
    let mut bench = Command::new(bin!("reload-bench"));
    bench
        .args([
            "--reloads",
            "20",
            "--interval-ms",
            "20",
            "--slices",
            "1",
            "--slice-ms",
            "300",
            "--rate",
            "200",
        ])
        .args(extra)
        .arg("--bin")
        .arg(&example);
    let outcome = run_for(bench, BENCH_TIMEOUT);
    eprintln!("{}", outcome.stdout);
    assert_eq!(outcome.code(), Some(0), "reload-bench: {outcome}");
    assert!(
        outcome.stdout.contains("| failed requests | 0 |"),
        "{outcome}"
    );
    assert!(
        outcome
            .stdout
            .contains("| zombie children of the supervisor | 0 |"),
        "{outcome}"
    );
    // The memory line, checked here (the benchmark prints it but does not judge it):
    // the end within 2 MiB of the value after 5 reloads.
    let line = outcome
        .stdout
        .lines()
        .find(|l| l.starts_with("| supervisor RSS after 5 reloads / at the end |"))
        .unwrap_or_else(|| panic!("no RSS line: {outcome}"));
    let mib: Vec<f64> = line
        .split('|')
        .nth(2)
        .expect("a value")
        .split('/')
        .filter_map(|v| v.trim().trim_end_matches(" MiB").parse().ok())
        .collect();
    assert_eq!(mib.len(), 2, "{line}");
    assert!(
        mib[1] <= mib[0] + 2.0,
        "the supervisor's RSS grew from {} to {} MiB over 15 reloads",
        mib[0],
        mib[1]
    );
}
