//! The earlier releases, for the cross-release tests (`tests/compat.rs`,
//! `tests/previous_release.rs`).
//!
//! Each `tests/fixtures/release-COMMIT/` holds the littleboss crates exactly as they
//! were at that commit, never edited, and `app/`, the test service `lbhttp` written
//! against them: the binary `lb-http-COMMIT`, the same service as `lb-http` (same name,
//! listeners, readiness and lameduck, and the same [`Answer`](crate::Answer)), so that
//! either binary reloads into the other. A fixture is a workspace of its own, excluded
//! from this one: it is never built, linted or formatted with it.
//!
//! - [`RELEASE_211A8CC`]: protocol 1 only, before `upgrade`.
//! - [`RELEASE_9E15504`]: protocols 1 to 3 and upgrade state version 1: the last
//!   release before the supervisor's second shape, which a release must still read
//!   and upgrade from.
//! - [`RELEASE_8589D1F`]: protocols 1 to 3 and upgrade state versions 1 and 2: the last
//!   release before protocol 4.
//! - [`RELEASE_C91DA15`]: protocols 1 to 4 and upgrade state versions 1 to 3: the last
//!   release before protocol 5.
//! - [`RELEASE_EC17274`]: protocols 1 to 5 and upgrade state versions 1 to 4: the last
//!   release before protocol 6.
//! - [`RELEASE_AEC18B9`]: protocols 1 to 6 and upgrade state versions 1 to 5: the last
//!   release before protocol 7.
//!
//! [`Release::build`] builds one, once per test process, with the versions of its
//! committed `Cargo.lock` (`--locked`), all of which a build of this workspace has in
//! the local cargo cache: no network is needed. Every fixture builds into the same
//! directory, `<target>/releases/`, so that the dependencies they share are compiled
//! once, and each binary has a name of its own. Cargo names the build of a path crate
//! by its version, its path inside its workspace, its profile and its dependencies, not
//! by the fixture it is in: fixtures of different versions or lock files build their
//! copies of the littleboss crates apart, and one of the same version and lock file as
//! an earlier one gives them a profile value of its own (`release-c91da15` against
//! `release-8589d1f`, `codegen-units = 16` in `release-ec17274`, 8 in
//! `release-aec18b9`: see their
//! `Cargo.toml`), or the two would share one build. Cargo's
//! lock on that directory serializes the builds of all the test processes.
//!
//! [`start_with_env`] and [`run_with_env`] run a binary with extra environment
//! variables, such as [`TEST_PROTOCOLS`], the switch that narrows the protocol range a
//! build of this release speaks.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use crate::{COMMAND_TIMEOUT, Env, Outcome, Supervisor, run_for};

/// A frozen earlier release: which commit, what it speaks, its binary of `lbhttp`.
#[derive(Debug)]
pub struct Release {
    /// The commit the fixture freezes.
    pub commit: &'static str,
    /// The oldest and newest protocol versions it speaks.
    pub protocols: (u64, u64),
    /// Its binary of the service `lbhttp`: `lb-http-COMMIT`.
    pub binary: &'static str,
    built: OnceLock<Result<PathBuf, String>>,
}

/// The release at 211a8cc: protocol 1 only.
pub static RELEASE_211A8CC: Release = Release {
    commit: "211a8cc",
    protocols: (1, 1),
    binary: "lb-http-211a8cc",
    built: OnceLock::new(),
};

/// The release at 9e15504: protocols 1 to 3, upgrade state version 1.
pub static RELEASE_9E15504: Release = Release {
    commit: "9e15504",
    protocols: (1, 3),
    binary: "lb-http-9e15504",
    built: OnceLock::new(),
};

/// The release at 8589d1f: protocols 1 to 3, upgrade state versions 1 and 2: the last
/// release before protocol 4.
pub static RELEASE_8589D1F: Release = Release {
    commit: "8589d1f",
    protocols: (1, 3),
    binary: "lb-http-8589d1f",
    built: OnceLock::new(),
};

/// The release at c91da15: protocols 1 to 4, upgrade state versions 1 to 3: the last
/// release before protocol 5.
pub static RELEASE_C91DA15: Release = Release {
    commit: "c91da15",
    protocols: (1, 4),
    binary: "lb-http-c91da15",
    built: OnceLock::new(),
};

/// The release at ec17274: protocols 1 to 5, upgrade state versions 1 to 4: the last
/// release before protocol 6.
pub static RELEASE_EC17274: Release = Release {
    commit: "ec17274",
    protocols: (1, 5),
    binary: "lb-http-ec17274",
    built: OnceLock::new(),
};

/// The release at aec18b9: protocols 1 to 6, upgrade state versions 1 to 5: the last
/// release before protocol 7.
pub static RELEASE_AEC18B9: Release = Release {
    commit: "aec18b9",
    protocols: (1, 6),
    binary: "lb-http-aec18b9",
    built: OnceLock::new(),
};

/// The commit of the oldest release that the tests run ([`RELEASE_211A8CC`]).
pub const OLD_RELEASE: &str = "211a8cc";

/// The wire protocol the oldest release speaks (its only one).
pub const OLD_PROTOCOL: u64 = 1;

/// The name of the oldest release's binary of the service `lbhttp`.
pub const OLD_BINARY: &str = "lb-http-211a8cc";

/// The test-only environment variable that narrows the range of protocol versions a
/// build of this release speaks (`1`, `2`, `1-2`), read once when the program starts.
pub const TEST_PROTOCOLS: &str = "LITTLEBOSS_TEST_PROTOCOLS";

/// The variable a supervisor of protocol 2 or later puts in its children's environment:
/// the range it speaks (absent means protocol 1 only).
pub const PROTOCOLS_VAR: &str = "LITTLEBOSS_PROTOCOLS";

/// What a client of this release says when asked to `upgrade` a supervisor that speaks
/// protocol 1 only.
pub const UPGRADE_REFUSED: &str = "the running supervisor speaks protocol 1 and cannot upgrade \
                                   itself: stop and start it with this binary";

/// The oldest fixture's directory: `tests/fixtures/release-211a8cc`.
pub fn fixture_dir() -> PathBuf {
    RELEASE_211A8CC.dir()
}

/// The oldest release's `lb-http-211a8cc`, built on first use: [`Release::build`].
pub fn old_release(bin: &Path) -> PathBuf {
    RELEASE_211A8CC.build(bin)
}

impl Release {
    /// The fixture's directory: `tests/fixtures/release-COMMIT`.
    pub fn dir(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/release-{}", self.commit))
    }

    /// Its `lb-http-COMMIT`, built on first use (see the module documentation) in
    /// `<target>/releases`, the directory all the fixtures share, where `<target>` is the
    /// target directory that holds `bin`, a binary of this package (`bin!("lb-http")`).
    ///
    /// Panics, with cargo's output, if the build fails.
    pub fn build(&self, bin: &Path) -> PathBuf {
        self.built
            .get_or_init(|| self.build_into(&Self::target_dir(bin)))
            .clone()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `<target>/releases`, for `bin` in `<target>/debug/` (or any profile's directory,
    /// or a target triple's).
    fn target_dir(bin: &Path) -> PathBuf {
        let profile_dir = bin.parent().expect("the binaries' directory");
        let target = profile_dir.parent().expect("the target directory");
        target.join("releases")
    }

    /// Builds the fixture's app into `target_dir` and returns the binary's path, from
    /// cargo's own report of the artifact (so that a `CARGO_BUILD_TARGET` or a profile
    /// setting of the environment changes nothing).
    fn build_into(&self, target_dir: &Path) -> Result<PathBuf, String> {
        let manifest = self.dir().join("Cargo.toml");
        let mut command = crate::lean_cargo();
        command
            .arg("build")
            .arg("--manifest-path")
            .arg(&manifest)
            .args(["--locked", "-p", self.binary, "--bin", self.binary])
            .args(["--message-format", "json-render-diagnostics"])
            .arg("--target-dir")
            .arg(target_dir)
            .stdin(Stdio::null());
        let outcome = run_for(command, BUILD_TIMEOUT);
        let failed = |why: &str| {
            format!(
                "building the release {} fixture ({}) failed: {why}\n{outcome}",
                self.commit,
                manifest.display()
            )
        };
        if outcome.code() != Some(0) {
            return Err(failed("cargo failed"));
        }
        let executable = outcome
            .stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| {
                message["reason"] == "compiler-artifact" && message["target"]["name"] == self.binary
            })
            .find_map(|message| message["executable"].as_str().map(PathBuf::from));
        match executable {
            Some(path) if path.is_file() => Ok(path),
            Some(path) => Err(failed(&format!("{} is not a file", path.display()))),
            None => Err(failed(&format!(
                "cargo reported no executable {}",
                self.binary
            ))),
        }
    }
}

/// How long building a fixture may take, waiting for cargo's lock included (from cold,
/// on a loaded two-core machine the first fixture takes well under a minute, and each
/// one after it in the shared directory a few seconds).
const BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Starts `bin --littleboss=start ARGS` like [`Env::start`], with the variables `vars`
/// added to its environment (and so to its children's), and waits until its first
/// child is ready. Its client commands ([`Supervisor::run`], its status) run `bin`
/// without them.
///
/// The process is `env VARS bin --littleboss=start ARGS`: `env` execs `bin` in place,
/// so the guarded pid is the supervisor's.
pub fn start_with_env<'e, S: AsRef<OsStr>>(
    env: &'e Env,
    bin: &Path,
    vars: &[(&str, &str)],
    args: &[S],
) -> Supervisor<'e> {
    let mut all: Vec<&OsStr> = Vec::new();
    let assignments: Vec<String> = vars
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    all.extend(assignments.iter().map(OsStr::new));
    all.push(bin.as_os_str());
    all.push(OsStr::new("--littleboss=start"));
    all.extend(args.iter().map(AsRef::as_ref));
    let supervisor = Supervisor {
        env,
        bin: bin.to_path_buf(),
        process: env.spawn(Path::new("env"), &all),
    };
    supervisor.wait_running();
    supervisor
}

/// [`Env::run`] with the variables `vars` added to the command's environment.
pub fn run_with_env<S: AsRef<OsStr>>(
    env: &Env,
    bin: &Path,
    vars: &[(&str, &str)],
    args: &[S],
) -> Outcome {
    let mut command = env.command(bin);
    command.args(args);
    for (name, value) in vars {
        command.env(name, value);
    }
    run_for(command, COMMAND_TIMEOUT)
}

/// The value of variable `name` in the environment process `pid` started with
/// (`/proc/PID/environ`), `None` if it is not set there or the process is gone.
pub fn environ_var(pid: u32, name: &str) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    bytes
        .split(|byte| *byte == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| entry.strip_prefix(&prefix).map(str::to_string))
}

/// Whether `text` names each of `versions` as a number of its own (`protocol 1`,
/// `1-2`, `[1, 2]`), not merely as a digit of a longer one (a pid, a port).
pub fn names_versions(text: &str, versions: &[u64]) -> bool {
    let numbers: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    versions
        .iter()
        .all(|version| numbers.contains(&version.to_string().as_str()))
}

/// Panics, with the outcome and the supervisor's logs, unless `outcome` exited 0.
#[track_caller]
pub fn assert_ok(sup: &Supervisor<'_>, what: &str, outcome: &Outcome) {
    assert_eq!(
        outcome.code(),
        Some(0),
        "{what} failed: {outcome}\n{}",
        sup.logs()
    );
}
