//! What the builder refuses in a program's declaration when the program runs: a wait
//! longer than `MAX_WAIT` (one hour), a `ready_timeout` of zero, a control flag or
//! listener name that the command line could never match. Each is refused before any
//! mode runs, with exit code 2 and a `littleboss: ...` line naming the mistake, and
//! nothing is started. The helper is `src/bin/lb-decl.rs`.

use littleboss_tests::{COMMAND_TIMEOUT, Env, Outcome, bin, run_for};

/// Runs `lb-decl ARGS` with `LB_DECLARE=declare` (unset for `None`).
fn run(env: &Env, declare: Option<&str>, args: &[&str]) -> Outcome {
    let mut command = env.command(bin!("lb-decl"));
    command.args(args).env_remove("LB_DECLARE");
    if let Some(declare) = declare {
        command.env("LB_DECLARE", declare);
    }
    run_for(command, COMMAND_TIMEOUT)
}

/// Checks that the declaration `declare` is refused with `message`, in bypass and in
/// every other mode, and that no supervisor was started.
fn refused(declare: &str, message: &str) {
    let env = Env::new();
    for args in [
        &[][..],
        &["--littleboss=start"],
        &["--littleboss=status"],
        &["--littleboss=reload"],
    ] {
        let outcome = run(&env, Some(declare), args);
        assert_eq!(outcome.code(), Some(2), "{declare} {args:?}: {outcome}");
        let expected = format!("littleboss: {message}\n");
        assert!(
            outcome.stderr.contains(&expected),
            "{declare} {args:?}: expected {expected:?} in:\n{outcome}"
        );
        assert!(
            !outcome.stderr.contains("panicked"),
            "{declare} {args:?}: {outcome}"
        );
    }
    assert!(!env.dir().exists(), "{declare}: nothing was started");
}

#[test]
fn lameduck_of_duration_max_is_refused() {
    refused(
        "lameduck-max",
        "lameduck of 18446744073709551615.999999999s is longer than the maximum of 60m (one hour)",
    );
}

#[test]
fn settle_one_millisecond_over_the_maximum_is_refused() {
    refused(
        "settle-over",
        "settle of 3600.001s is longer than the maximum of 60m (one hour)",
    );
}

#[test]
fn ready_timeout_of_zero_is_refused() {
    refused(
        "ready-timeout-zero",
        "ready_timeout of 0ns would fail every child before it could say hello; the shortest is 1ms",
    );
}

#[test]
fn flag_name_with_dashes_is_refused() {
    refused(
        "dashed-flag",
        "invalid control flag name \"--lb\": it may not start with '-', since the dashes of a flag are not part of its name (\"lb\" gives --lb=MODE)",
    );
}

#[test]
fn listener_name_with_a_dash_is_refused() {
    refused(
        "dashed-listener",
        "invalid listener name \"-spare\": it may not start with '-', since the dashes of a flag are not part of its name (\"spare\" gives --spare=ADDR)",
    );
}

#[test]
fn listener_named_like_the_control_flag_is_refused() {
    refused(
        "listener-like-flag",
        "listener name \"lb\" is taken by the --lb control flag; choose another name",
    );
}

#[test]
fn waits_of_exactly_the_maximum_are_accepted() {
    // Every wait at `MAX_WAIT`: the declaration passes, and the status command gets as
    // far as looking for a supervisor.
    let env = Env::new();
    let outcome = run(&env, None, &["--littleboss=status"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    let expected = format!(
        "lbdecl: no supervisor running (no socket at {})",
        env.socket("lbdecl").display()
    );
    assert!(
        outcome.stderr.contains(&expected),
        "expected {expected:?} in:\n{outcome}"
    );
}
