//! Children running as another user (`user` and `group`): behind a privileged port
//! that the supervisor, root, binds; from a binary that user cannot reach; and the
//! supervisor's refusals when it is not root.
//!
//! The helpers (`src/bin/lb-*.rs`) answer every HTTP request with a JSON report of
//! themselves: pid, mode, `lb.args()`, argv, uid, gid, groups, `HOME`, `USER`, `LOGNAME`
//! (see `littleboss_tests::report_support`). The tests that need root are
//! `#[ignore = "needs root"]`: run them as root with `cargo test -p littleboss-tests
//! --test users -- --ignored` (`.ci/run` does). Run that way, a test that cannot check
//! what it is about (not root, no user `nobody`) fails; it never passes without running.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use littleboss_tests::report_support::{
    CustomSupervisor, ENV, get_json, pid_of, shown, spawn_with, start_on_port,
};
use littleboss_tests::{
    COMMAND_TIMEOUT, DEADLINE, Env, Value, bin, executable_by_others, is_gone, listener_addr,
    open_tempdir, port_is_free, require_root, run_for, runnable_by_nobody, status_numbers,
    wait_for, wait_gone,
};

/// `setpriv`, to start a helper as another user (it execs the helper too).
const SETPRIV: &str = "/usr/bin/setpriv";

/// The uid (and gid) of `nobody` on Linux.
const NOBODY: u32 = 65534;

// ---------------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------------

/// A list of numbers from a JSON array (panics on anything else).
fn numbers(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_u64().unwrap_or_else(|| panic!("not a number: {v}")))
        .collect()
}

/// A privileged TCP port (600..1000) on 127.0.0.1 that was free a moment ago; each call
/// starts its search elsewhere, so that tests running side by side rarely collide.
fn free_privileged_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() * 7 + NEXT.fetch_add(53, Ordering::Relaxed);
    (0..400)
        .map(|i| 600 + ((start + i) % 400) as u16)
        .find(|&port| port_is_free(SocketAddr::from(([127, 0, 0, 1], port))))
        .expect("a free port in 600..1000")
}

/// What a test about users needs root for.
const ROOT: &str = "run processes as another user";

/// Fails `test`, which cannot check anything here, saying why.
#[track_caller]
fn cannot_run(test: &str, why: &str) -> ! {
    panic!("{test} cannot run here: {why}")
}

/// A `/etc/passwd` entry: uid, gid, home.
fn passwd(user: &str) -> Option<(u32, u32, String)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 7 && fields[0] == user).then(|| {
            (
                fields[2].parse().expect("a uid"),
                fields[3].parse().expect("a gid"),
                fields[5].to_string(),
            )
        })
    })
}

/// A `/etc/group` entry: gid and members.
fn group(name: &str) -> Option<(u32, Vec<String>)> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && fields[0] == name).then(|| {
            let members = fields[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            (fields[2].parse().expect("a gid"), members)
        })
    })
}

/// The gids of the groups in `/etc/group` that list `user` as a member.
fn member_gids(user: &str) -> BTreeSet<u64> {
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[3].split(',').any(|m| m == user))
                .then(|| fields[2].parse().ok())
                .flatten()
        })
        .collect()
}

/// A control directory owned by `nobody`, mode 0700, in `dir`.
fn nobody_control_dir(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    std::fs::create_dir(&run).expect("mkdir");
    std::os::unix::fs::chown(&run, Some(NOBODY), Some(NOBODY)).expect("chown");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    run
}

// ---------------------------------------------------------------------------------
// 5. Children running as another user
// ---------------------------------------------------------------------------------

/// What `nobody`'s child must report: uid, gid, groups, HOME, USER, LOGNAME.
fn assert_runs_as(answer: &Value, uid: u32, gid: u32, groups: &BTreeSet<u64>, home: &str) {
    let uid = u64::from(uid);
    let gid = u64::from(gid);
    assert_eq!(numbers(&answer["uid"]), vec![uid; 4], "{answer}");
    assert_eq!(numbers(&answer["gid"]), vec![gid; 4], "{answer}");
    let got: BTreeSet<u64> = numbers(&answer["groups"]).into_iter().collect();
    assert_eq!(&got, groups, "{answer}");
    assert_eq!(answer["env"]["HOME"], home, "{answer}");
    assert_eq!(answer["env"]["USER"], "nobody", "{answer}");
    assert_eq!(answer["env"]["LOGNAME"], "nobody", "{answer}");
}

/// Starts `bin` (a helper whose children run as another user) supervised on a free
/// privileged port, as root.
fn start_privileged<'e>(
    env: &'e Env,
    bin: &Path,
    vars: &[(&str, String)],
) -> (CustomSupervisor<'e>, Value, u16) {
    start_on_port(free_privileged_port, |port| {
        let http = format!("--http=127.0.0.1:{port}");
        CustomSupervisor::spawn(
            env,
            bin,
            vars,
            &["--littleboss=start", &http],
            &["--littleboss=status-json"],
        )
    })
}

#[test]
#[ignore = "needs root"]
fn children_run_as_nobody_behind_a_privileged_port() {
    require_root(ROOT);
    let Some((uid, gid, home)) = passwd("nobody") else {
        cannot_run(
            "children_run_as_nobody_behind_a_privileged_port",
            "no user nobody",
        );
    };
    let mut groups = member_gids("nobody");
    groups.insert(u64::from(gid));

    let env = Env::new();
    let bin = bin!("lb-run-as-user");
    let (sup, status, port) = start_privileged(&env, bin, &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(listener_addr(&status, "http"), Some(addr), "{status}");
    let sup_pid = pid_of(&status, "supervisor_pid");
    assert_eq!(sup_pid, sup.pid());
    // The supervisor keeps root; the child is nobody.
    assert_eq!(status_numbers(sup_pid, "Uid"), Some(vec![0; 4]));
    assert_eq!(status_numbers(sup_pid, "Gid"), Some(vec![0; 4]));
    let child = pid_of(&status, "child_pid");
    assert_eq!(status_numbers(child, "Uid"), Some(vec![u64::from(uid); 4]));

    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), child, "{answer}");
    assert_eq!(answer["mode"], "supervised", "{answer}");
    assert_runs_as(&answer, uid, gid, &groups, &home);

    // A reload: the new child is nobody too; the supervisor is still root.
    let outcome = sup.run(&["--littleboss=reload"]);
    assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
    let status = sup.status();
    let new_child = pid_of(&status, "child_pid");
    assert_ne!(new_child, child, "{status}");
    assert_eq!(pid_of(&status, "supervisor_pid"), sup_pid);
    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), new_child, "{answer}");
    assert_runs_as(&answer, uid, gid, &groups, &home);
    assert_eq!(status_numbers(sup_pid, "Uid"), Some(vec![0; 4]));
    wait_gone(child, "the old child");

    // A reload that moves the listener to another privileged port: the supervisor
    // (root) binds it, the new child (nobody) serves it.
    let (moved, third) = (0..5)
        .find_map(|_| {
            let port = free_privileged_port();
            let outcome = sup.run(&["--littleboss=reload", &format!("--http=127.0.0.1:{port}")]);
            if outcome.stderr.contains("address in use") {
                return None;
            }
            assert_eq!(outcome.code(), Some(0), "{outcome}\n{}", sup.logs());
            let status = sup.status();
            Some((
                SocketAddr::from(([127, 0, 0, 1], port)),
                pid_of(&status, "child_pid"),
            ))
        })
        .expect("a free privileged port for the reload");
    assert_ne!(third, new_child);
    let answer = get_json(moved);
    assert_eq!(pid_of(&answer, "pid"), third, "{answer}");
    assert_runs_as(&answer, uid, gid, &groups, &home);
    wait_gone(new_child, "the second child");
    wait_for(DEADLINE, "the first privileged port to be free", || {
        port_is_free(addr).then_some(())
    });

    sup.stop(&["--littleboss=stop"], "lbuser", &env.socket("lbuser"));
    wait_for(DEADLINE, "the privileged port to be free", || {
        port_is_free(moved).then_some(())
    });
}

#[test]
#[ignore = "needs root"]
fn child_runs_as_nobody_from_a_binary_nobody_cannot_reach() {
    let test = "child_runs_as_nobody_from_a_binary_nobody_cannot_reach";
    require_root(ROOT);
    let Some((uid, _, _)) = passwd("nobody") else {
        cannot_run(test, "no user nobody");
    };
    // The copy lives in a directory of root's, mode 0700: the supervisor runs it by
    // fd, so nobody never resolves its path.
    let env = Env::new();
    let private = env.path().join("private");
    std::fs::create_dir(&private).expect("mkdir");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let bin = env.copy_binary(bin!("lb-run-as-user"), "private/lb-run-as-user");
    assert!(
        !executable_by_others(&bin),
        "{} is reachable",
        bin.display()
    );
    let sup = CustomSupervisor::spawn(
        &env,
        &bin,
        &[],
        &["--littleboss=start"],
        &["--littleboss=status-json"],
    );
    let status = sup.wait_running();
    let addr = listener_addr(&status, "http").unwrap_or_else(|| panic!("{status}"));
    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), pid_of(&status, "child_pid"));
    assert_eq!(numbers(&answer["uid"]), vec![u64::from(uid); 4], "{answer}");
    sup.stop(&["--littleboss=stop"], "lbuser", &env.socket("lbuser"));
}

#[test]
#[ignore = "needs root"]
fn binary_nobody_cannot_execute_fails_the_start_clearly() {
    require_root(ROOT);
    let env = Env::new();
    let bin = env.copy_binary(bin!("lb-run-as-user"), "lb-run-as-user");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let outcome = env.run(&bin, &["--littleboss=start"]);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "littleboss: lbuser: cannot start {}: permission denied",
            bin.display()
        )),
        "{outcome}"
    );
    assert!(!outcome.stderr.contains("serving http"), "{outcome}");
    assert!(!env.socket("lbuser").exists(), "{outcome}");
}

#[test]
fn unknown_user_or_group_fails_the_start() {
    for (vars, expected) in [
        (
            vec![("LB_PRIV_USER", "lbpriv-no-such-user")],
            "cannot run the child as user \"lbpriv-no-such-user\": no such user",
        ),
        (
            vec![
                ("LB_PRIV_USER", "root"),
                ("LB_PRIV_GROUP", "lbpriv-no-such-group"),
            ],
            "cannot run the child as group \"lbpriv-no-such-group\": no such group",
        ),
    ] {
        let env = Env::new();
        let mut args: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        args.push(shown(bin!("lb-run-as-env")));
        args.push("--littleboss=start".into());
        let outcome = env.run(Path::new(ENV), &args);
        assert_eq!(outcome.code(), Some(1), "{vars:?}: {outcome}");
        assert!(
            outcome
                .stderr
                .contains(&format!("littleboss: lbrunas: {expected}")),
            "{vars:?}: {outcome}"
        );
        assert!(!env.socket("lbrunas").exists(), "{outcome}");
    }
}

/// The builder documents that a mistake in what is declared is reported when the
/// program runs, with exit code 2 (the attribute refuses `group` without `user` at
/// compile time), whatever the mode.
#[test]
fn builder_group_without_user_is_a_declaration_error_in_every_mode() {
    let env = Env::new();
    let bin = bin!("lb-run-as-env");
    let vars = [("LB_PRIV_GROUP", "daemon".to_string())];
    let expected = "`group` needs `user`: the group is the one the child's user runs with";
    let mut wrong = Vec::new();
    for mode in ["--littleboss=start", "--littleboss=bypass"] {
        let process = spawn_with(&env, bin, &vars, &[mode]);
        let exited = process.wait_for("it to exit or to serve", || {
            if let Some(status) = process.try_exit() {
                return Some(Some(status));
            }
            process
                .stderr()
                .contains(" serving http on ")
                .then_some(None)
        });
        match exited.map(|status| status.code()) {
            None => wrong.push(format!(
                "{mode}: it serves although it declares a group without a user\n{}",
                process.logs()
            )),
            Some(code) if code != Some(2) || !process.stderr().contains(expected) => {
                wrong.push(format!(
                    "{mode}: exit code {code:?}, expected 2 and {expected:?}\n{}",
                    process.logs()
                ));
            }
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
#[ignore = "needs root"]
fn group_option_sets_the_childs_group() {
    require_root(ROOT);
    let (Some((uid, _, home)), Some((nogroup, _))) = (passwd("nobody"), group("nogroup")) else {
        cannot_run(
            "group_option_sets_the_childs_group",
            "no user nobody or group nogroup",
        );
    };
    let mut groups = member_gids("nobody");
    groups.insert(u64::from(nogroup));

    let env = Env::new();
    let (sup, status, port) = start_privileged(&env, bin!("lb-run-as-group"), &[]);
    let answer = get_json(SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(
        pid_of(&answer, "pid"),
        pid_of(&status, "child_pid"),
        "{answer}"
    );
    assert_runs_as(&answer, uid, nogroup, &groups, &home);
    sup.stop(&["--littleboss=stop"], "lbgroup", &env.socket("lbgroup"));
}

#[test]
#[ignore = "needs root"]
fn builder_group_other_than_the_users_primary_group() {
    let test = "builder_group_other_than_the_users_primary_group";
    require_root(ROOT);
    let (Some((uid, gid, home)), Some((daemon, _))) = (passwd("nobody"), group("daemon")) else {
        cannot_run(test, "no user nobody or group daemon");
    };
    if daemon == gid {
        cannot_run(test, "daemon is nobody's primary group");
    }
    // The group given, and the groups that list nobody as a member; not its primary
    // group, not root's.
    let mut groups = member_gids("nobody");
    groups.insert(u64::from(daemon));

    let env = Env::new();
    let vars = [
        ("LB_PRIV_USER", "nobody".to_string()),
        ("LB_PRIV_GROUP", "daemon".to_string()),
    ];
    let (sup, status, port) = start_privileged(&env, bin!("lb-run-as-env"), &vars);
    let answer = get_json(SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(
        pid_of(&answer, "pid"),
        pid_of(&status, "child_pid"),
        "{answer}"
    );
    assert_runs_as(&answer, uid, daemon, &groups, &home);
    sup.stop(&["--littleboss=stop"], "lbrunas", &env.socket("lbrunas"));
}

#[test]
#[ignore = "needs root"]
fn supervisor_not_root_refuses_to_run_children_as_another_user() {
    require_root(ROOT);
    let env = Env::new();
    let open = open_tempdir();
    let bin = runnable_by_nobody(bin!("lb-run-as-root"), open.path());
    let dir = nobody_control_dir(open.path());
    let mut command = env.command(&bin);
    command
        .arg("--littleboss=start")
        .env("LITTLEBOSS_DIR", &dir)
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY);
    let outcome = run_for(command, COMMAND_TIMEOUT);
    assert_eq!(outcome.code(), Some(1), "{outcome}");
    assert!(
        outcome.stderr.contains("littleboss: lbroot: ")
            && outcome.stderr.contains("user \"root\"")
            && outcome.stderr.contains("not root"),
        "{outcome}"
    );
    assert!(!dir.join("lbroot.sock").exists(), "{outcome}");
    assert_eq!(
        std::fs::metadata(&dir)
            .expect("the control directory")
            .uid(),
        NOBODY
    );
}

#[test]
#[ignore = "needs root"]
fn supervisor_not_root_may_name_its_own_user() {
    let test = "supervisor_not_root_may_name_its_own_user";
    require_root(ROOT);
    let Some((uid, gid, _)) = passwd("nobody") else {
        cannot_run(test, "no user nobody");
    };
    if (uid, gid) != (NOBODY, NOBODY) || !Path::new(SETPRIV).exists() {
        cannot_run(
            test,
            &format!("nobody is not {NOBODY}:{NOBODY}, or no {SETPRIV}"),
        );
    }
    let env = Env::new();
    let open = open_tempdir();
    let bin = runnable_by_nobody(bin!("lb-run-as-user"), open.path());
    let dir = nobody_control_dir(open.path());
    // setpriv execs the supervisor as nobody (same pid), in the guard's process group.
    let setpriv_args = [
        format!("LITTLEBOSS_DIR={}", shown(&dir)),
        SETPRIV.to_string(),
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_string(),
        shown(&bin),
        "--littleboss=start".to_string(),
    ];
    let sup = CustomSupervisor::of_process(
        &env,
        &bin,
        &["--littleboss=status-json"],
        env.spawn(Path::new(ENV), &setpriv_args),
    )
    .with_client(NOBODY, dir.clone());
    let status = sup.wait_running();
    let sup_pid = pid_of(&status, "supervisor_pid");
    assert_eq!(sup_pid, sup.pid());
    assert_eq!(
        status_numbers(sup_pid, "Uid"),
        Some(vec![u64::from(NOBODY); 4])
    );
    let addr = listener_addr(&status, "http").unwrap_or_else(|| panic!("{status}"));
    let answer = get_json(addr);
    assert_eq!(pid_of(&answer, "pid"), pid_of(&status, "child_pid"));
    assert_eq!(
        numbers(&answer["uid"]),
        vec![u64::from(NOBODY); 4],
        "{answer}"
    );
    sup.stop(&["--littleboss=stop"], "lbuser", &dir.join("lbuser.sock"));
    assert!(is_gone(sup_pid));
}
