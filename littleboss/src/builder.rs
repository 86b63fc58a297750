//! The public builder: what `#[littleboss::main]` expands to, usable without the macro.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, Declared, SupervisorInit};
use crate::context::Context;
use crate::error::Failed;
use crate::spec::ListenerSpec;

pub use crate::config::Flavor;

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
/// listener declared twice, a wait longer than [`MAX_WAIT`](crate::MAX_WAIT)) are
/// reported when the program runs, on stderr, with exit code 2; the attribute reports
/// the same mistakes at compile time, in the same words.
#[must_use = "a Littleboss does nothing until `run` or `run_sync` is called"]
pub struct Littleboss {
    config: Config,
    init: Option<SupervisorInit>,
}

impl std::fmt::Debug for Littleboss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Littleboss")
            .field("config", &self.config)
            .field("supervisor_init", &self.init.is_some())
            .finish()
    }
}

impl Littleboss {
    /// A program named `name` (`[A-Za-z0-9_-]+`): the name of its control socket and of
    /// the service in every message.
    pub fn new(name: &str) -> Littleboss {
        Littleboss {
            config: Config {
                name: name.to_string(),
                listeners: Vec::new(),
                lameduck: crate::context::DEFAULT_LAMEDUCK,
                persist: false,
                fallback: true,
                calls_ready: false,
                settle: Duration::from_millis(250),
                ready_timeout: littleboss_rules::wait::DEFAULT_READY_TIMEOUT,
                probation: Duration::ZERO,
                probation_5xx: None,
                standby: true,
                state_timeout: None,
                flavor: Flavor::MultiThread,
                flag: crate::flags::FLAG.to_string(),
                command: None,
                addresses: Vec::new(),
                user: None,
                group: None,
                unix_mode: None,
                metrics: None,
                logger: crate::logger::Logger::default(),
            },
            init: None,
        }
    }

    /// Declares a listener `name` with its default spec `NETWORK:ADDRESS` (`tcp::443`,
    /// `udp:127.0.0.1:5353`, `tcp6:[::1]:8080`, or `tcp:` for one that is off unless its
    /// flag `--NAME=ADDR` gives an address). Since the name is a flag too, it is
    /// `[A-Za-z0-9_-]+`, does not start with `-`, and is not the control flag's name.
    pub fn listener(mut self, name: &str, spec: &str) -> Littleboss {
        self.config.listeners.push(Declared {
            name: name.to_string(),
            spec: ListenerSpec::parse(spec),
        });
        self
    }

    /// How long a winding-down program may take before its process group is killed
    /// (default 2 s; zero kills it at once). At most [`MAX_WAIT`](crate::MAX_WAIT), one
    /// hour: `run` refuses a longer one.
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
    /// without exiting to count as ready (default 250 ms, as Go littleboss; zero is ready
    /// as soon as it said hello). At most [`MAX_WAIT`](crate::MAX_WAIT), one hour.
    pub fn settle(mut self, settle: Duration) -> Littleboss {
        self.config.settle = settle;
        self
    }

    /// For a program that calls [`Context::ready`]: how long the supervisor waits for it
    /// before it gives up on the new process (default 30 s). The supervisor waits as
    /// long for any child's hello, so it is at least 1 ms, and at most
    /// [`MAX_WAIT`](crate::MAX_WAIT), one hour.
    pub fn ready_timeout(mut self, ready_timeout: Duration) -> Littleboss {
        self.config.ready_timeout = ready_timeout;
        self
    }

    /// How long a child reloaded to this binary is on probation once it is ready
    /// (default zero: none, a reload is done once the new child is ready). During a
    /// probation the old child stands by, warm, without accepting; if the new child
    /// exits, calls [`Context::unhealthy`], or the operator runs
    /// `--littleboss=rollback`, the old child serves again at once, and the new one
    /// winds down. At most [`MAX_WAIT`](crate::MAX_WAIT), one hour.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # fn main() -> std::process::ExitCode {
    /// littleboss::Littleboss::new("myblog")
    ///     .listener("http", "tcp::8080")
    ///     .probation(Duration::from_secs(30))
    ///     .run(|lb| async move { Ok::<(), std::io::Error>(()) })
    /// # }
    /// ```
    pub fn probation(mut self, probation: Duration) -> Littleboss {
        self.config.probation = probation;
        self
    }

    /// With the HTTP helpers: fail a probation once at least 20 responses were given
    /// and more than `pct` percent of them had a 5xx status (1 to 100; off by default).
    pub fn probation_5xx(mut self, pct: u8) -> Littleboss {
        self.config.probation_5xx = Some(pct);
        self
    }

    /// Whether the old child stands by during a probation, for a rollback without a
    /// cold start (default `true`). `false`: it winds down as soon as the new child is
    /// ready, and a failed probation starts the previous binary again, for programs
    /// that cannot afford two processes at once.
    pub fn standby(mut self, standby: bool) -> Littleboss {
        self.config.standby = standby;
        self
    }

    /// How long [`Context::take_state`] waits for the state of the process a reload
    /// replaces (default 5 s, or the [`ready_timeout`](Self::ready_timeout) if that is
    /// shorter). The supervisor tells the new process it did not come once this is up,
    /// and the program decides: start cold, or refuse to become ready. At least 1 ms,
    /// and at most the `ready_timeout`: the new process takes its state before it is
    /// ready, so a longer wait would outlast the supervisor's wait for it.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # fn main() -> std::process::ExitCode {
    /// littleboss::Littleboss::new("myblog")
    ///     .listener("http", "tcp::8080")
    ///     .calls_ready(true)
    ///     .state_timeout(Duration::from_secs(20))
    ///     .run(|lb| async move {
    ///         let _state = lb.take_state().await;
    ///         lb.ready();
    ///         Ok::<(), std::io::Error>(())
    ///     })
    /// # }
    /// ```
    pub fn state_timeout(mut self, state_timeout: Duration) -> Littleboss {
        self.config.state_timeout = Some(state_timeout);
        self
    }

    /// Serves the supervisor's metrics on the declared listener `name` instead of
    /// passing it to the program (`metrics = "NAME"` in the attribute): `GET /metrics`
    /// in the OpenMetrics or the Prometheus text format. It needs littleboss's cargo
    /// feature `metrics`. The supervisor parses what arrives there, as root if it runs
    /// as root with `user = "..."`: give it a unix or a loopback address.
    ///
    /// ```no_run
    /// littleboss::Littleboss::new("myblog")
    ///     .listener("http", "tcp::8080")
    ///     .listener("metrics", "tcp:127.0.0.1:9100")
    ///     .metrics("metrics")
    ///     .run(|lb| async move {
    ///         let _http = lb.tcp_listener("http")?;
    ///         lb.lameduck().await;
    ///         Ok::<(), std::io::Error>(())
    ///     });
    /// ```
    pub fn metrics(mut self, name: &str) -> Littleboss {
        self.config.metrics = Some(name.to_string());
        self
    }

    /// Which tokio runtime [`run`](Self::run) builds for the program (default
    /// [`Flavor::MultiThread`]).
    pub fn flavor(mut self, flavor: Flavor) -> Littleboss {
        self.config.flavor = flavor;
        self
    }

    /// Renames the control flag (default `littleboss`): `.flag("lb")` gives `--lb=start`,
    /// and `--littleboss=...` is then an ordinary argument of the program. The name is
    /// `[A-Za-z0-9_-]+` without its dashes: `"--lb"` is refused, as it could never match.
    pub fn flag(mut self, flag: &str) -> Littleboss {
        self.config.flag = flag.to_string();
        self
    }

    /// Takes the mode from the program's own parser (the Go `Command`), for a program
    /// whose parser owns every flag: the mode it read for the control flag (`"start"`,
    /// `"stop"`, ...; `"bypass"` or an empty string to run directly).
    ///
    /// littleboss then does not read the mode from the command line, but it still
    /// removes its own flags from the arguments it passes to the child and to
    /// [`Context::args`]. See the `clap` example:
    ///
    /// ```no_run
    /// # let parsed_mode: Option<String> = None;
    /// # let parsed_http: Option<String> = None;
    /// let mut lb = littleboss::Littleboss::new("myblog")
    ///     .listener("http", "tcp:127.0.0.1:8080")
    ///     .command(parsed_mode.as_deref().unwrap_or("bypass"));
    /// if let Some(addr) = &parsed_http {
    ///     lb = lb.listener_address("http", addr);
    /// }
    /// ```
    pub fn command(mut self, mode: &str) -> Littleboss {
        self.config.command = Some(mode.to_string());
        self
    }

    /// Sets listener `name`'s address as the program's own parser read it from
    /// `--NAME=ADDR` (an empty address turns it off); it takes precedence over the
    /// command line.
    pub fn listener_address(mut self, name: &str, address: &str) -> Littleboss {
        self.config
            .addresses
            .push((name.to_string(), address.to_string()));
        self
    }

    /// Runs `init` in the supervisor only, once, after the listeners are bound and
    /// before the first child starts (the Go `SupervisorInit`): for work that needs the
    /// supervisor's privileges or must happen once per start, not once per reload. An
    /// error stops the start with that error.
    pub fn supervisor_init<F, R>(mut self, init: F) -> Littleboss
    where
        F: FnOnce() -> R + 'static,
        R: MainResult,
    {
        self.init = Some(Box::new(move || {
            init().into_result().map_err(|e| e.to_string())
        }));
        self
    }

    /// Runs every child as `user` (its uid, its primary group unless [`group`] is set,
    /// and its supplementary groups; `HOME`, `USER` and `LOGNAME` set to match), while
    /// the supervisor keeps its own privileges: bind port 443 as root, serve as an
    /// unprivileged user. Starting a supervisor that is not root with another user is
    /// an error. The option applies to supervised children only: a program run directly
    /// (bypass mode) runs as whoever started it.
    ///
    /// [`group`]: Self::group
    pub fn user(mut self, user: &str) -> Littleboss {
        self.config.user = Some(user.to_string());
        self
    }

    /// The group every child runs as (default: the [`user`](Self::user)'s primary group).
    pub fn group(mut self, group: &str) -> Littleboss {
        self.config.group = Some(group.to_string());
        self
    }

    /// The permissions of the socket files of `unix:` listeners, such as `0o660` to let a
    /// group connect (default: as the umask leaves them). The supervisor removes a
    /// listener's socket file when it closes the listener, and replaces a stale one left
    /// by a dead process, never one a live process answers on.
    pub fn unix_mode(mut self, mode: u32) -> Littleboss {
        self.config.unix_mode = Some(mode & 0o7777);
        self
    }

    /// Sends the supervisor's own messages (a child started, a reload failed, ...) to
    /// `log` instead of stderr, where they are `littleboss: NAME: ...` lines by default.
    /// The text starts with the service name. `log_with(|_, _| {})` silences them; the
    /// `log` and `tracing` features send them to those facades instead.
    ///
    /// ```no_run
    /// # fn main() -> std::process::ExitCode {
    /// littleboss::Littleboss::new("myblog")
    ///     .log_with(|level, line| println!("[{level:?}] {line}"))
    ///     .run_sync(|_lb| ())
    /// # }
    /// ```
    pub fn log_with<F>(mut self, log: F) -> Littleboss
    where
        F: Fn(crate::Level, &str) + Send + Sync + 'static,
    {
        self.config.logger = crate::logger::Logger::new(Some(std::sync::Arc::new(log)));
        self
    }

    /// What was declared, for the tests of what is refused.
    #[cfg(test)]
    pub(crate) fn into_config(self) -> Config {
        self.config
    }

    /// Runs an `async` main in the mode that the command line asks for, on a tokio
    /// runtime of the chosen [`Flavor`], and returns the exit code for `main` to return.
    ///
    /// A failure that keeps the mode from running (a bad flag, a busy port, no
    /// supervisor to reload, a refused reload) is printed to stderr and gives its exit
    /// code (2 for a command line or declaration littleboss cannot accept, else 1);
    /// [`try_run`](Self::try_run) returns it instead.
    pub fn run<F, Fut>(self, main: F) -> ExitCode
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future,
        Fut::Output: MainResult,
    {
        self.try_run_inner(main).unwrap_or_else(Failed::report)
    }

    /// As [`run`](Self::run), for a program that embeds littleboss and wants to tell
    /// its failures apart: a failure that keeps the mode from running is returned as an
    /// [`Error`](crate::Error), and nothing is printed for it. `Ok` is the exit code of
    /// whatever ran (the program in bypass mode or as a child, the supervisor, a
    /// command), which has printed what it prints.
    ///
    /// ```no_run
    /// use littleboss::{Error, Littleboss};
    /// # fn main() -> std::process::ExitCode {
    /// let lb = Littleboss::new("myblog").listener("http", "tcp::8080");
    /// match lb.try_run(|_lb| async {}) {
    ///     Ok(code) => code,
    ///     Err(Error::Bind { address, .. }) => {
    ///         eprintln!("{address} is taken: is another myblog running?");
    ///         std::process::ExitCode::from(3)
    ///     }
    ///     Err(e) => {
    ///         eprintln!("myblog: {e}");
    ///         std::process::ExitCode::FAILURE
    ///     }
    /// }
    /// # }
    /// ```
    pub fn try_run<F, Fut>(self, main: F) -> Result<ExitCode, crate::Error>
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future,
        Fut::Output: MainResult,
    {
        self.try_run_inner(main).map_err(|failed| failed.error)
    }

    fn try_run_inner<F, Fut>(self, main: F) -> Result<ExitCode, Failed>
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future,
        Fut::Output: MainResult,
    {
        let flavor = self.config.flavor;
        let declared = self.config.declared();
        crate::dispatch::run(self.config, self.init, move |ctx| {
            ctx.declare(declared);
            let runtime = match flavor {
                Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
                Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build(),
            };
            match runtime {
                Ok(runtime) => runtime
                    .block_on(main(ctx))
                    .into_result()
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot start the tokio runtime: {e}")),
            }
        })
    }

    /// Runs a plain (non-`async`) main in the mode that the command line asks for, and
    /// returns the exit code for `main` to return; failures as with [`run`](Self::run).
    pub fn run_sync<F, R>(self, main: F) -> ExitCode
    where
        F: FnOnce(Context) -> R,
        R: MainResult,
    {
        self.try_run_sync_inner(main).unwrap_or_else(Failed::report)
    }

    /// [`try_run`](Self::try_run) for a plain (non-`async`) main.
    pub fn try_run_sync<F, R>(self, main: F) -> Result<ExitCode, crate::Error>
    where
        F: FnOnce(Context) -> R,
        R: MainResult,
    {
        self.try_run_sync_inner(main).map_err(|failed| failed.error)
    }

    fn try_run_sync_inner<F, R>(self, main: F) -> Result<ExitCode, Failed>
    where
        F: FnOnce(Context) -> R,
        R: MainResult,
    {
        let declared = self.config.declared();
        crate::dispatch::run(self.config, self.init, move |ctx| {
            ctx.declare(declared);
            main(ctx).into_result().map_err(|e| e.to_string())
        })
    }
}

/// What a littleboss `main` may return: `()` or `Result<(), E>` with `E: Debug`.
///
/// An `Err` is printed to stderr as `Error: ...` and the process exits with code 1, as
/// with a plain `main`, and a supervised child's error is quoted in the reason a
/// failed `reload` or `start` prints. An [`std::io::Error`] (also one in a
/// `Box<dyn Error>`) is printed with its `Display` text (`no listener named "htp";
/// ...`), which says all it has to say, rather than its `Debug` form
/// (`Custom { kind: NotFound, error: ... }`); any other error with its `Debug` form, as
/// Rust's own `main` prints it.
///
/// The trait is sealed: littleboss implements it for these types only.
pub trait MainResult: sealed::Sealed {
    /// `Ok` for success, or the error as littleboss shows it.
    fn into_result(self) -> Result<(), MainError>;
}

mod sealed {
    /// Only littleboss implements [`MainResult`](super::MainResult).
    pub trait Sealed {}
    impl Sealed for () {}
    impl<E> Sealed for Result<(), E> {}
}

impl MainResult for () {
    fn into_result(self) -> Result<(), MainError> {
        Ok(())
    }
}

impl<E: std::fmt::Debug + 'static> MainResult for Result<(), E> {
    fn into_result(self) -> Result<(), MainError> {
        self.map_err(|e| MainError {
            text: error_text(&e),
        })
    }
}

/// The error a program's `main` (or supervisor init) returned, as littleboss shows it:
/// see [`MainResult`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MainError {
    text: String,
}

impl std::fmt::Display for MainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for MainError {}

/// How an `Err` from main is shown: see [`MainResult`].
fn error_text<E: std::fmt::Debug + 'static>(e: &E) -> String {
    use std::any::Any;
    use std::error::Error;
    let any: &dyn Any = e;
    let io = any.downcast_ref::<std::io::Error>().or_else(|| {
        let boxed: Option<&dyn Error> = match any.downcast_ref::<Box<dyn Error + Send + Sync>>() {
            Some(b) => Some(b.as_ref()),
            None => any.downcast_ref::<Box<dyn Error>>().map(|b| b.as_ref()),
        };
        boxed.and_then(|b| b.downcast_ref::<std::io::Error>())
    });
    match io {
        Some(io) => io.to_string(),
        None => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::MainResult;

    #[test]
    fn an_io_error_from_main_is_shown_with_its_display_text() {
        let custom = || io::Error::new(io::ErrorKind::NotFound, "no listener named \"htp\"");
        let shown = Err::<(), _>(custom())
            .into_result()
            .unwrap_err()
            .to_string();
        assert_eq!(shown, "no listener named \"htp\"");
        let boxed: Box<dyn std::error::Error> = Box::new(custom());
        assert_eq!(
            Err::<(), _>(boxed).into_result().unwrap_err().to_string(),
            shown
        );
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(custom());
        assert_eq!(
            Err::<(), _>(boxed).into_result().unwrap_err().to_string(),
            shown
        );
        let os = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            Err::<(), _>(os).into_result().unwrap_err().to_string(),
            io::Error::from_raw_os_error(libc::ENOENT).to_string()
        );
        // Anything else as Rust's own main shows it.
        assert_eq!(
            Err::<(), _>("text").into_result().unwrap_err().to_string(),
            "\"text\""
        );
        assert_eq!(().into_result(), Ok(()));
    }
}
