//! The public builder: what `#[littleboss::main]` expands to, usable without the macro.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use crate::context::Context;
use crate::spec::ListenerSpec;

/// Which tokio runtime runs an `async` main (the supervisor itself always uses a
/// single-threaded one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    pub spec: Result<ListenerSpec, String>,
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
    pub flavor: Flavor,
}

/// A self-supervising program: the Go littleboss `New` / `Listener` / `Run`.
///
/// `#[littleboss::main]` is sugar over this builder. Without the macro:
///
/// ```no_run
/// use std::time::Duration;
///
/// fn main() -> std::process::ExitCode {
///     littleboss::Littleboss::new("myblog")
///         .listener("http", "tcp:127.0.0.1:8080")
///         .lameduck(Duration::from_secs(5))
///         .run(|lb| async move {
///             let listener = lb.tcp_listener("http")?;
///             lb.ready();
///             tokio::select! {
///                 _ = lb.lameduck() => {}
///                 _ = async { loop { let _ = listener.accept().await; } } => {}
///             }
///             Ok::<(), std::io::Error>(())
///         })
/// }
/// ```
///
/// Mistakes in what is declared (an invalid name, a spec that does not parse, a
/// listener declared twice) are reported when the program runs, on stderr, with exit
/// code 2; the attribute reports the same mistakes at compile time.
#[derive(Clone, Debug)]
#[must_use = "a Littleboss does nothing until `run` or `run_sync` is called"]
pub struct Littleboss {
    config: Config,
}

impl Littleboss {
    /// A program named `name` (`[A-Za-z0-9_-]+`): the name of its control socket and of
    /// the service in every message.
    pub fn new(name: &str) -> Littleboss {
        Littleboss {
            config: Config {
                name: name.to_string(),
                listeners: Vec::new(),
                lameduck: Duration::from_secs(2),
                persist: false,
                fallback: true,
                calls_ready: false,
                settle: Duration::from_millis(250),
                ready_timeout: Duration::from_secs(30),
                flavor: Flavor::MultiThread,
            },
        }
    }

    /// Declares a listener `name` with its default spec `NETWORK:ADDRESS` (`tcp::443`,
    /// `udp:127.0.0.1:5353`, `tcp6:[::1]:8080`, or `tcp:` for one that is off unless its
    /// flag `--NAME=ADDR` gives an address).
    pub fn listener(mut self, name: &str, spec: &str) -> Littleboss {
        self.config.listeners.push(Declared {
            name: name.to_string(),
            spec: ListenerSpec::parse(spec).map_err(|e| e.to_string()),
        });
        self
    }

    /// How long a winding-down program may take before its process group is killed
    /// (default 2 s).
    pub fn lameduck(mut self, lameduck: Duration) -> Littleboss {
        self.config.lameduck = lameduck;
        self
    }

    /// Whether the supervisor starts the program again when it exits on its own
    /// (default `false`).
    pub fn persist(mut self, persist: bool) -> Littleboss {
        self.config.persist = persist;
        self
    }

    /// Whether the supervisor goes back to the previous binary when a reloaded one
    /// fails (default `true`).
    pub fn fallback(mut self, fallback: bool) -> Littleboss {
        self.config.fallback = fallback;
        self
    }

    /// Declares that the program calls [`Context::ready`] once it serves, so that the
    /// supervisor waits for that call (up to [`ready_timeout`](Self::ready_timeout))
    /// instead of a fixed [`settle`](Self::settle) time (default `false`).
    pub fn calls_ready(mut self, calls_ready: bool) -> Littleboss {
        self.config.calls_ready = calls_ready;
        self
    }

    /// For a program that does not call [`Context::ready`]: how long its main must run
    /// without exiting to count as ready (default 250 ms, as Go littleboss).
    pub fn settle(mut self, settle: Duration) -> Littleboss {
        self.config.settle = settle;
        self
    }

    /// For a program that calls [`Context::ready`]: how long the supervisor waits for it
    /// before it gives up on the new process (default 30 s).
    pub fn ready_timeout(mut self, ready_timeout: Duration) -> Littleboss {
        self.config.ready_timeout = ready_timeout;
        self
    }

    /// Which tokio runtime [`run`](Self::run) builds for the program (default
    /// [`Flavor::MultiThread`]).
    pub fn flavor(mut self, flavor: Flavor) -> Littleboss {
        self.config.flavor = flavor;
        self
    }

    /// Runs an `async` main in the mode that the command line asks for, on a tokio
    /// runtime of the chosen [`Flavor`], and returns the exit code for `main` to return.
    pub fn run<F, Fut>(self, main: F) -> ExitCode
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future,
        Fut::Output: MainResult,
    {
        let flavor = self.config.flavor;
        crate::dispatch::run(self.config, move |ctx| {
            let runtime = match flavor {
                Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
                Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build(),
            };
            match runtime {
                Ok(runtime) => runtime.block_on(main(ctx)).into_result(),
                Err(e) => Err(format!("cannot start the tokio runtime: {e}")),
            }
        })
    }

    /// Runs a plain (non-`async`) main in the mode that the command line asks for, and
    /// returns the exit code for `main` to return.
    pub fn run_sync<F, R>(self, main: F) -> ExitCode
    where
        F: FnOnce(Context) -> R,
        R: MainResult,
    {
        crate::dispatch::run(self.config, move |ctx| main(ctx).into_result())
    }
}

/// What a littleboss `main` may return: `()` or `Result<(), E>` with `E: Debug`.
///
/// An `Err` is printed to stderr and the process exits with code 1, as with a plain
/// `main`.
pub trait MainResult {
    /// `Ok` for success, or the error as text.
    fn into_result(self) -> Result<(), String>;
}

impl MainResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Debug> MainResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}
