//! `status` never exceeds the control frame: a reload with arguments that, shown as
//! UTF-8, would take more than a frame leaves `status` and `status-json` working, with
//! long fields cut short (`… (N more bytes)`) and bytes that are not UTF-8 shown as
//! U+FFFD; a reload with more arguments than status could show is refused.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use littleboss_tests::attack_support::raw;
use littleboss_tests::attack_support::wire::{self, Response};
use littleboss_tests::{Env, NO_ARGS, Signal, Supervisor, bin, get};

/// The service name of `lb-silent`, which takes any arguments.
const NAME: &str = "lbquiet";

/// `--littleboss=reload -- ARGS...`, which must succeed.
fn reload_with(sup: &Supervisor<'_>, args: Vec<OsString>) {
    let mut all = vec![OsString::from("--littleboss=reload"), OsString::from("--")];
    all.extend(args);
    let reload = sup.run(&all);
    assert_eq!(reload.code(), Some(0), "{reload}\n{}", sup.logs());
}

/// `status` and `status-json` both answer, the latter with `count` program arguments
/// (after the program name and the listener flag, `--` left out); returns them.
fn assert_status_works(sup: &Supervisor<'_>, count: usize) -> Vec<String> {
    let human = sup.run(&["--littleboss=status"]);
    assert_eq!(human.code(), Some(0), "{human}");
    assert!(human.stdout.contains("command line "), "{human}");
    let status = sup.status();
    let args: Vec<String> = status["child_args"]
        .as_array()
        .expect("child_args")
        .iter()
        .map(|a| a.as_str().expect("a string").to_string())
        .skip(2)
        .filter(|a| a != "--")
        .collect();
    assert_eq!(args.len(), count, "{args:?}");
    let child = sup.child_pid();
    assert_eq!(get(sup.addr("http")).expect("GET").pid, child);
    args
}

#[test]
fn twenty_arguments_of_invalid_utf8_leave_status_working() {
    let env = Env::new();
    let sup = env.start(bin!("lb-silent"), NO_ARGS);
    let args = vec![OsString::from_vec(vec![0xFF; 1500]); 20];
    reload_with(&sup, args);
    let shown = assert_status_works(&sup, 20);
    for arg in &shown {
        assert!(arg.starts_with('\u{FFFD}'), "{arg:?}");
        assert!(arg.ends_with(" more bytes)"), "cut short: {arg:?}");
    }
    // The child runs with the exact bytes.
    let child = sup.child_pid();
    let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).expect("cmdline");
    assert!(
        cmdline
            .split(|b| *b == 0)
            .filter(|a| *a == [0xFF; 1500].as_slice())
            .count()
            == 20,
        "the child's arguments are the bytes given"
    );
    // A plain reload and SIGHUP keep the arguments; status still works.
    let reload = sup.run(&["--littleboss=reload"]);
    assert_eq!(reload.code(), Some(0), "{reload}");
    assert_status_works(&sup, 20);
    let before = sup.child_pid();
    sup.signal(Signal::HUP);
    sup.wait_for("the reload on SIGHUP", || {
        let status = sup.try_status().ok()?;
        (status["child_pid"] != before && status["state"] == "running").then_some(())
    });
    assert_status_works(&sup, 20);
}

#[test]
fn ascii_arguments_near_the_frame_size_leave_status_working() {
    let env = Env::new();
    let sup = env.start(bin!("lb-silent"), NO_ARGS);
    // 15 x 4,000 bytes: a reload request just under 64 KiB.
    let args = vec![OsString::from("a".repeat(4000)); 15];
    reload_with(&sup, args);
    let shown = assert_status_works(&sup, 15);
    assert!(
        shown.iter().any(|a| a.ends_with(" more bytes)")),
        "{:?}",
        shown.iter().map(String::len).collect::<Vec<_>>()
    );
    let raw = raw::status(&env.socket(NAME));
    assert!(raw.child_args.len() >= 17, "{:?}", raw.child_args.len());
}

#[test]
fn a_reload_with_more_arguments_than_status_can_show_is_refused() {
    let env = Env::new();
    let sup = env.start(bin!("lb-silent"), NO_ARGS);
    let child = sup.child_pid();
    let arg = [0xFFu8; 30];
    let args: Vec<&[u8]> = vec![&arg; 2000];
    let frame = wire::reload_request(b"/bin/true", Some(&args), &[]);
    match raw::ask(&env.socket(NAME), &frame) {
        Ok(Response::Failed { reason }) => assert!(
            reason.contains("2000 arguments are more than status can show"),
            "{reason}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(sup.child_pid(), child, "nothing changed");
    assert_status_works(&sup, 0);
}
