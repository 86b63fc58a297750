//! What the program declared about itself, as one value that the builder fills and
//! every mode reads.

use std::time::Duration;

use crate::spec::{ListenerSpec, SpecError};

/// Which tokio runtime runs an `async` main (the supervisor itself always uses a
/// single-threaded one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flavor {
    /// `tokio::runtime::Builder::new_current_thread`.
    CurrentThread,
    /// `tokio::runtime::Builder::new_multi_thread` (the default).
    #[default]
    MultiThread,
}

/// A declared listener: its name and spec as the program wrote it.
#[derive(Clone, Debug)]
pub(crate) struct Declared {
    pub name: String,
    pub spec: Result<ListenerSpec, SpecError>,
}

/// Everything the program declared about itself, fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub name: String,
    pub listeners: Vec<Declared>,
    pub lameduck: Duration,
    pub persist: bool,
    pub fallback: bool,
    pub calls_ready: bool,
    pub settle: Duration,
    pub ready_timeout: Duration,
    /// How long a reloaded child is on probation once ready (zero: none).
    pub probation: Duration,
    /// With the HTTP helpers: the share of 5xx responses, in percent, that fails a
    /// probation (`None`: not counted).
    pub probation_5xx: Option<u8>,
    /// Whether the old child stands by during a probation (if it can).
    pub standby: bool,
    /// How long `take_state` waits for the state of the process a reload replaces, as
    /// declared (`None`: the default, see [`Config::state_timeout`]).
    pub state_timeout: Option<Duration>,
    pub flavor: Flavor,
    /// The control flag's name (`littleboss` gives `--littleboss=MODE`).
    pub flag: String,
    /// The mode as the program's own parser read it, instead of from argv.
    pub command: Option<String>,
    /// Listener addresses as the program's own parser read them: `(name, address)`.
    pub addresses: Vec<(String, String)>,
    /// The user (and group) every child runs as.
    pub user: Option<String>,
    pub group: Option<String>,
    /// The mode of unix listeners' socket files.
    pub unix_mode: Option<u32>,
    /// The declared listener the supervisor serves its metrics on (`metrics = "NAME"`):
    /// no child gets it.
    pub metrics: Option<String>,
    /// Where the supervisor's messages go.
    pub logger: crate::logger::Logger,
}

impl Config {
    /// What the program's [`Context`](crate::Context) needs of it.
    pub(crate) fn declared(&self) -> crate::context::Declared {
        crate::context::Declared {
            lameduck: self.lameduck,
            probation_5xx: self.probation_5xx,
            calls_ready: self.calls_ready,
            state_timeout: self.state_timeout(),
        }
    }

    /// How long `take_state` waits: the `state_timeout` declared, else 5 s or the
    /// `ready_timeout` if that is shorter.
    pub(crate) fn state_timeout(&self) -> Duration {
        littleboss_rules::wait::state_timeout(self.state_timeout, self.ready_timeout)
    }
}

/// Why a supervisor of a build without littleboss's `metrics` feature will not start
/// when `metrics = "NAME"` is declared (the attribute cannot see the runtime's
/// features), or answer `--littleboss=metrics`.
pub(crate) const NO_METRICS: &str = "serving metrics needs littleboss's cargo feature `metrics`, which this build does not have: enable it, as in `littleboss = { version = \"0.2\", features = [\"metrics\"] }`";

/// Code the supervisor runs once, after binding the listeners and before the first
/// child starts.
pub(crate) type SupervisorInit = Box<dyn FnOnce() -> Result<(), String>>;
