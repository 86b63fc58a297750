//! littleboss: a network service that supervises itself and reloads without dropping a
//! connection, from one attribute on `main`.
//!
//! ```no_run
//! #[littleboss::main(name = "myblog", listener(https = "tcp::443"), calls_ready = true)]
//! async fn main(lb: littleboss::Context) -> std::io::Result<()> {
//!     let listener = lb.tcp_listener("https")?;
//!     lb.ready();
//!     loop {
//!         tokio::select! {
//!             _ = lb.lameduck() => return Ok(()),   // finish in-flight work, then return
//!             conn = listener.accept() => { let _ = conn?; /* serve it */ }
//!         }
//!     }
//! }
//! ```
//!
//! # The process model
//!
//! The compiled program is one binary with several modes, chosen by `--littleboss=MODE`
//! (rename the flag with the `flag` option):
//!
//! - `bypass` (the default): the program binds its listeners itself and runs directly,
//!   as if littleboss were not there. SIGINT or SIGTERM resolves
//!   [`Context::lameduck`]; a second one exits at once.
//! - `start`: the process becomes the **supervisor**. It binds every listener once,
//!   creates its control socket `<dir>/<name>.sock`, and starts the same executable
//!   again as its **child**, in a process group of its own. The child receives the
//!   listening sockets over a private socket pair and runs `main`. The supervisor stays
//!   in the foreground, its pid never changes (what systemd's `MAINPID` needs), and it
//!   is the only process that waits for the child.
//! - `dev`: a supervisor as `start`, for development: it also reloads to every new
//!   build of its executable, and a broken build never takes it down (see
//!   [Development mode](#development-mode)).
//! - `reload`: asks the supervisor to replace the child with the binary that ran the
//!   command; `stop`, `status` and `status-json` do what they say.
//!
//! `<dir>` is `$LITTLEBOSS_DIR`, else `$XDG_RUNTIME_DIR/littleboss`, else
//! `$TMPDIR/littleboss-UID`; it must be owned by the user and closed to others (mode
//! 0700), and the supervisor accepts commands only from its own user and root.
//!
//! # The reload sequence
//!
//! 1. The supervisor opens the new executable (and keeps that fd, so the very file it
//!    checked is what runs, even if the path is replaced later; on macOS and FreeBSD,
//!    which run it by path, a file replaced since is refused), binds any listener
//!    whose address the reload command changed, and starts the new child beside the
//!    old one. Both hold the same listening sockets: the kernel's accept queue is
//!    shared, so no connection is refused at any moment.
//! 2. The new child says hello and gets its listeners. It is **ready** when it calls
//!    [`Context::ready`] (with `calls_ready = true`, waited for up to `ready_timeout`,
//!    30 s by default), or, if it does not declare that it calls it, once it has run for
//!    `settle` (250 ms by default) without exiting.
//! 3. Only then does the old child get lameduck: it stops accepting, finishes its
//!    in-flight work and exits; after `lameduck` (2 s by default) its process group is
//!    killed. The reload command exits 0 and prints
//!    `reloaded NAME: pid OLD -> NEW in N ms`.
//! 4. If the new child fails before it is ready (it exits, is killed, does not become
//!    ready in time, speaks another protocol or is another service), its process group
//!    is killed, the old child never noticed, and the reload command exits 1 with the
//!    reason. If a reloaded child that was ready later fails, the supervisor starts the
//!    previous binary again (`fallback`, on by default).
//!
//! One reload runs at a time; a second one is refused with the reason, and a stop
//! cancels a reload under way. SIGHUP reloads from the current binary's path, SIGTERM
//! and SIGINT stop.
//!
//! # Probation
//!
//! A binary that declares `probation = "30s"` ([`Littleboss::probation`]) is not taken
//! at its word when it is ready: step 3 above becomes a probation. The old child
//! **stands by**: it stops accepting and winds its connections down as at lameduck
//! (idle ones move to the new child), but it does not exit, and
//! [`Context::lameduck`] does not resolve. The reload command says
//! `reloaded NAME: pid OLD -> NEW in N ms; on probation for 30 s` and waits.
//!
//! - The probation **passes** when its time is up or the operator runs
//!   `--littleboss=promote`: the old child gets lameduck (its lameduck time counts from
//!   then), the reload counts, and the reload command says
//!   `probation passed: pid NEW serves NAME`.
//! - It **fails** when the new child exits, calls [`Context::unhealthy`], serves more
//!   than `probation_5xx` of 5xx responses through the HTTP helpers, or the operator runs
//!   `--littleboss=rollback`: the old child **resumes** at once (it accepts again, and
//!   the new child's idle connections move back to it), the new child gets lameduck, and
//!   the reload command exits 1, saying why.
//! - With no child standing by (one that cannot, see [`Context::can_stand_by`], one
//!   that exited meanwhile, or `standby = false`), the old child winds down as before
//!   and a rollback starts the previous binary again from its held fd, gated on
//!   readiness as a fallback is (the new child serves until then). With
//!   `fallback = false` as well there is nothing to go back to: a live new child
//!   serves on, and the reload command says so.
//!
//! Meanwhile a reload, an upgrade or SIGHUP is refused, and a stop stops both children.
//! A child of an earlier protocol, and dev mode, have no probation.
//!
//! # How the supervisor decides
//!
//! Every decision of the supervisor is made by one state machine that does no I/O: it
//! takes an input and the time, and returns effects; a thin loop around it turns
//! sockets, signals, exits and timers into inputs and carries the effects out. So the
//! rules below hold by construction, and are checked by a property test over random
//! sequences of inputs.
//!
//! | state | what it holds | ends when |
//! |---|---|---|
//! | starting | the serving child, not yet ready (or a program waiting out its restart backoff) | it is ready, exits, or a stop comes |
//! | running | the serving child, ready | a reload, its exit, or a stop |
//! | reloading | the serving child, and the new one (or its binary being opened) | the new one is ready (it serves), fails (the old one never noticed), or a stop (the new one is killed) |
//! | stopping | only children winding down: nothing starts in this state | the last child is gone and what the service left behind is ended: the stop is answered with the serving child's exit code (1 instead of 0 if a leftover process could not be ended) |
//! | probation | the new child, serving, and the old one standing by (or the binary a rollback would start) | the probation passes (the old child winds down), fails (the old child resumes, or the previous binary starts), or a stop (both wind down) |
//! | upgrading | as reloading (and probation, if the new binary declares one), then the binary's second probe and the supervisor's own re-execution | the new image runs (same pid), or the upgrade fails and nothing changed but the child's reload |
//! | idle (dev mode) | no child: the last one exited, the listeners stay open | a build lands, a reload, or a stop |
//!
//! Each child goes through its own states: started, then (after its hello) welcomed
//! with its listeners and settling or awaiting `ready()`, ready, standing by, in
//! lameduck, killed;
//! at its exit its process group is killed and then it is reaped, so the group's id
//! cannot belong to anyone else yet.
//!
//! What the machine takes in:
//!
//! - a child started, or could not be; a child said hello, ready or finished, that it
//!   can stand by or is unhealthy, handed over connections or answered for them, or
//!   sent something that is not a message; a child exited;
//! - `status`, `stop`, `reload`, `upgrade`, `promote`, `rollback` from a client; a
//!   client went away;
//! - a reload's binary opened and its listeners bound (off the loop), or not; an
//!   upgrade's binary answered its probe; the re-execution failed; a new image resumed;
//! - SIGTERM, SIGINT (stop; twice: kill now), SIGHUP (reload);
//! - a new build landed (dev mode);
//! - what the service left behind was ended, or could not all be;
//! - the time, against its deadlines: hello, settle, ready, lameduck, restart backoff,
//!   connections on their way, the probation's end.
//!
//! What it asks the loop to do: start a child; welcome it with its listeners; send it a
//! message (a refusal, lameduck, standby, resume, connections to take or given back);
//! tell a client something before its answer (a probation began); kill a process
//! group; reap a child; open a reload's binary and bind its listeners; probe an
//! upgrade's binary; re-execute the supervisor; answer a client; tell systemd; log;
//! look at a build again that was still being written; close the listeners and the
//! control socket, then end what the service left behind, last.
//!
//! # Development mode
//!
//! `--littleboss=dev` runs a supervisor in the foreground, as `start`, that also
//! watches its own executable's path and reloads to each new build that lands there,
//! with the same arguments, as SIGHUP does: the new build starts beside the old one and
//! serves once it is ready; if it fails before that, the old one goes on serving. Run
//! the build's output and rebuild in another terminal (a plain `cargo build`,
//! `cargo watch -x build`, `watchexec -e rs cargo build`):
//!
//! ```text
//! $ cargo build && target/debug/myblog --littleboss=dev
//! littleboss: myblog: supervisor pid 4242 started child pid 4300; listeners https=tcp:[::]:443
//! littleboss: myblog: dev: watching /src/myblog/target/debug for new builds of myblog
//! littleboss: myblog: dev: new build ready, pid 4300 -> 4311 in 35 ms
//! littleboss: myblog: dev: new build pid 4318 exited with code 101 before it was ready; still serving pid 4311
//! ```
//!
//! - **Which builds.** The directory is watched (inotify on Linux, FSEvents on macOS,
//!   kqueue on the BSDs, polling where none can be had), so a file renamed over the
//!   path counts, and so does cargo's way of landing a build (it removes the old file
//!   and hard-links the new one in). A file is taken once it is complete: renamed in,
//!   or, from the moment it appears (written in place or linked in), once it is closed
//!   after its last write or no process holds it open for writing (a writer that
//!   pauses, or whose first write is slow, is not reloaded half-written; where the
//!   system reports no closes, its size and time must hold still for a quiet period),
//!   and a non-empty executable. A build still open for writing when it is started
//!   after all (`ETXTBSY`) starts once its writer is done, and is not a failure. Every event restarts a
//!   quiet period of 200 ms, so one build makes one reload. A build that lands while a
//!   reload is under way is kept (one, however many land) and reloads when that one
//!   ends.
//! - **One line a build**, through the supervisor's logger:
//!   `dev: new build ready, pid OLD -> NEW in N ms`, or
//!   `dev: new build pid NEW exited with code 101 before it was ready; still serving
//!   pid OLD` (or was killed, did not call `ready()` in time, could not be started). A
//!   build of another service is refused, as any reload would be.
//! - **A crash does not end the session.** A child that exits (or crashes, or cannot
//!   start) is reported, `dev: child pid N exited with code 101 after 2.1 s; the
//!   listeners stay open, waiting for the next build`, and the supervisor goes on in
//!   state `idle`: it keeps the listeners, so connections wait in their queue, and the
//!   next build that lands (or a SIGHUP, or `reload`) starts. The same binary is not
//!   started again by itself: in dev mode `persist` and `fallback` do not apply, so a
//!   build that crashes at once does not fill the terminal.
//! - **Listeners are the supervisor's.** They are bound once, when dev mode starts: a
//!   build that declares a new listener, or moves one, gets the ones the supervisor
//!   holds (the accessor of a new one answers `no listener named ...`) until the dev
//!   supervisor is started again.
//! - **The terminal.** Children keep the terminal's stdout and stderr; Ctrl-C stops
//!   everything (the children wind down as at any stop; a second Ctrl-C kills them).
//!
//! # Options
//!
//! | attribute | builder | default | meaning |
//! |---|---|---|---|
//! | `name = "myblog"` | [`Littleboss::new`] | required | the service name, `[A-Za-z0-9_-]+` |
//! | `listener(https = "tcp::443")` | [`Littleboss::listener`] | none | a listener and its default address |
//! | `lameduck = "2s"` | [`Littleboss::lameduck`] | 2 s | how long a winding-down child may take (zero: killed at once) |
//! | `persist = true` | [`Littleboss::persist`] | false | start the child again when it exits (backoff 100 ms to 30 s) |
//! | `fallback = false` | [`Littleboss::fallback`] | true | go back to the previous binary when a reloaded one fails |
//! | `calls_ready = true` | [`Littleboss::calls_ready`] | false | readiness is the program's [`Context::ready`] call |
//! | `settle = "250ms"` | [`Littleboss::settle`] | 250 ms | readiness of a program that does not call `ready` |
//! | `ready_timeout = "30s"` | [`Littleboss::ready_timeout`] | 30 s | how long to wait for `ready` (and the hello), at least 1 ms |
//! | `probation = "30s"` | [`Littleboss::probation`] | none | after a reload to this binary, how long the new child is on probation |
//! | `probation_5xx = "5%"` | [`Littleboss::probation_5xx`] | off | with the HTTP helpers, the 5xx share that fails a probation |
//! | `standby = false` | [`Littleboss::standby`] | true | during a probation, the old child winds down instead of standing by |
//! | `state_timeout = "5s"` | [`Littleboss::state_timeout`] | 5 s (or `ready_timeout`, if shorter) | how long [`Context::take_state`] waits for the state of the process a reload replaces, at least 1 ms, at most `ready_timeout` |
//! | `flavor = "current_thread"` | [`Littleboss::flavor`] | multi_thread | the tokio runtime of an async main |
//! | `flag = "lb"` | [`Littleboss::flag`] | `littleboss` | the control flag's name, `[A-Za-z0-9_-]+` not starting with `-` |
//! | `supervisor_init = f` | [`Littleboss::supervisor_init`] | none | run once in the supervisor, after binding |
//! | `user = "www"`, `group = "www"` | [`Littleboss::user`], [`Littleboss::group`] | the supervisor's | who the children run as |
//! | `unix_mode = "0660"` | [`Littleboss::unix_mode`] | as the umask leaves it | the mode of `unix:` listeners' socket files |
//!
//! The attribute writes a duration as an integer followed by `ms`, `s` or `m`. Each of
//! `lameduck`, `settle`, `ready_timeout`, `probation` and `state_timeout` is at most
//! [`MAX_WAIT`], one hour: no
//! reload should hang on a child for longer, and every deadline the supervisor
//! computes from them stays in the clock's range. The attribute refuses a longer one
//! at compile time; the builder refuses it (and every other mistake the attribute
//! would catch) when the program runs, with the same message on stderr and exit code
//! 2. Both apply the rules of the `littleboss-rules` crate.
//!
//! A listener's name is also its flag, so it is `[A-Za-z0-9_-]+`, does not start with
//! `-`, and is not the control flag's name.
//!
//! A listener spec is `NETWORK:ADDRESS`: networks `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`,
//! `udp6`; `:443` is every interface (IPv6 and IPv4), `127.0.0.1:0` a free port,
//! `[::1]:8080` IPv6, and an empty address declares a listener that is off until its
//! flag gives one. Each listener is also a flag: `--https=ADDR` moves it, `--https=`
//! turns it off; given to `reload`, it rebinds that listener for the new child.
//!
//! A `unix:` listener is a path (`unix:/run/myblog.sock`) or, on Linux, a name in the
//! abstract namespace (`unix:@myblog`); the supervisor replaces a stale socket file left by a
//! dead process but refuses one that a live process answers on, sets the file's mode
//! with `unix_mode`, and removes the file when it closes the listener.
//!
//! # Under systemd and in containers
//!
//! The supervisor's pid never changes, so it is systemd's main pid. With
//! `NOTIFY_SOCKET` set it sends `READY=1` once the first child is ready, `RELOADING=1`
//! (with `MONOTONIC_USEC`) and `READY=1` around each reload, `STOPPING=1` on stop, and
//! `STATUS=` lines; SIGHUP reloads, so `Type=notify-reload` works. Sockets passed by
//! socket activation (`LISTEN_FDS`, `LISTEN_FDNAMES`) are adopted by the listener of
//! the same name, after a check that they are of its kind and family. Children see
//! none of these variables. littleboss reads the environment once and never changes
//! it: a child gets an explicit environment instead. As PID 1 the supervisor also reaps orphans.
//!
//! ```ini
//! [Service]
//! Type=notify-reload
//! ExecStart=/usr/local/bin/myblog --littleboss=start
//! ```
//!
//! The supervisor's own messages are `littleboss: NAME: ...` lines on stderr; the `log`
//! and `tracing` features send them to those facades (with `tracing`, the lines said
//! during a reload are in its span, `littleboss.reload`, with the number of its event
//! in the journal), and [`Littleboss::log_with`] to a function of the program's.
//!
//! # What the supervisor did, and metrics that survive reloads
//!
//! The supervisor keeps a journal of its last 256 events (reloads with their steps and
//! the connections that moved, upgrades, restarts, fallbacks, exits, stops,
//! promotions, rollbacks), which `--littleboss=history` prints a line each and
//! `--littleboss=history-json` as JSON; it crosses `upgrade`, and its numbers never
//! repeat. With the `metrics` feature, the supervisor counts reloads, exits, moves and,
//! from the HTTP helpers of every child, requests by status class, their durations and
//! the connections open; it keeps the totals itself, so that they never go back for its
//! whole life, reloads and upgrades included. It serves them on the listener that
//! `metrics = "NAME"` names (`GET /metrics`, OpenMetrics or the Prometheus text
//! format), and `--littleboss=metrics` prints them. That listener is parsed by the
//! supervisor's own process, root if it runs as root with `user = "..."`: give it a unix
//! or a loopback address. The list of metrics is in the README.
//!
//! # Which flags are littleboss's
//!
//! littleboss owns exactly two kinds of flags: the control flag `--littleboss=MODE`
//! (renamed by `flag`) and one flag per declared listener, `--NAME=ADDR`. Each may be
//! written with one or two dashes, and with `=` or as two arguments. Everything else is
//! the program's, and so is everything after a `--` (in `reload` mode, the arguments
//! after `--` are the new child's).
//!
//! - [`Context::args`] is the command line without littleboss's flags, program name
//!   first, in the original order.
//! - A supervised child runs with the program name, then one `--NAME=ADDR` per listener
//!   as bound (`--https=[::]:443`; `--https=` if it is off), then the program's
//!   arguments unchanged. The control flag is never passed on. So `ps` shows the real
//!   addresses, and a program whose own parser (clap, say) declares the listener flags
//!   sees them too.
//! - A program whose parser owns every flag reads the mode and the addresses itself and
//!   hands them over with [`Littleboss::command`] and [`Littleboss::listener_address`]
//!   (the Go `Command`); see the `clap` example.
//!
//! # Without the macro
//!
//! The attribute is sugar over [`Littleboss`], the Go `New` / `Listener` / `Run`:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     littleboss::Littleboss::new("myblog")
//!         .listener("https", "tcp::443")
//!         .run(|lb| async move {
//!             let listener = lb.tcp_listener("https")?;
//!             lb.lameduck().await;
//!             drop(listener);
//!             Ok::<(), std::io::Error>(())
//!         })
//! }
//! ```
//!
//! # Serving HTTP
//!
//! The `hyper` and `axum` features add one-line servers that wind down the way a reload
//! needs, so that no request is lost: `littleboss::http::serve(&lb, "http", service)`
//! for a hyper service, `littleboss::axum::serve(&lb, "http", app)` for an axum app, and
//! `littleboss::http::Server` for their options and, with the `rustls` feature, TLS. They
//! stop accepting at lameduck without touching the shared listener, hand idle HTTP/1.1
//! connections, plaintext or TLS, to the new process (the client sees no close; a TLS
//! session goes on there with its keys), close the other
//! HTTP/1.1 connections between requests (`Connection: close`, a grace period for idle
//! ones), send HTTP/2 connections a GOAWAY, close every connection with a lingering
//! close, and fit it all in [`Context::lameduck_time`]. See the `http` module's
//! documentation.
//!
//! A program that serves connections its own way moves them with
//! [`Context::hand_over`] and [`Context::adopt`] (the `handoff` example).
//!
//! # State transfer
//!
//! A reload keeps the sockets and, with the helpers, the connections; what else the
//! old process built (a cache that took minutes to warm, rate-limiter windows,
//! sessions, upstream connections) it can give to the new one: its **state**, bytes
//! and named fds.
//!
//! - The new process, declared with `calls_ready = true`, asks before it is ready:
//!   [`Context::take_state`] gives an [`Inherited`] (its [`bytes`](Inherited::bytes)
//!   and [`fds`](Inherited::take_fds)), `Ok(None)` when there is none to take (no
//!   process replaced, or one that offers none), or an error saying why none came.
//!   It waits up to its `state_timeout` (5 s by default); then the program decides:
//!   start cold, or refuse to become ready.
//! - The old process, still serving, answers each request that
//!   [`Context::state_wanted`] gives with a snapshot: [`StateRequest::give`] (bytes,
//!   copied on the calling thread: use `spawn_blocking` for a large state) or
//!   [`StateRequest::give_value`] (a serde value after a format version the program
//!   chooses, read back with [`Inherited::take_value`], which names both versions when
//!   they differ). Dropping the request gives none.
//! - It is transactional: the old process keeps its state, and littleboss the fds it
//!   gave, until [`Given::outcome`] says how the reload ended: `true` once the new
//!   process serves (after its probation, if it has one), `false` if the reload failed
//!   or was rolled back. The next reload's new process asks again, so a failed reload
//!   loses nothing.
//! - The bytes never pass through the supervisor: they are written into a memfd sealed
//!   against writing, growing and shrinking, whose fd it relays, and the new process
//!   checks the seals and the size, then maps it read-only: `bytes()` is the state
//!   without a copy (on macOS, an unlinked 0600 file in `$TMPDIR`, read into memory).
//!   A state holds up to 4 GiB and 1,024 fds named by 1 to 255 bytes.
//! - Once the new process is ready, the old one, standing by or in lameduck, may give
//!   one later snapshot ([`Given::update`]: what it wrote meanwhile), which the new
//!   process gets from [`Context::state_updated`].
//!
//! Each failure is an [`Error::State`] whose [`StateProblem`] a program can match.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `hyper` | the `http` module: hyper services over HTTP/1.1 and h2c |
//! | `axum` | the `axum` module: axum apps, served the same way (implies `hyper`) |
//! | `rustls` | TLS for the `http` module, through tokio-rustls with ring (implies `hyper`) |
//! | `log` | the supervisor's messages go to the `log` facade |
//! | `tracing` | the supervisor's messages go to `tracing`, a span per reload |
//! | `metrics` | the supervisor serves its metrics (`metrics = "NAME"`), with prometheus-client; with `hyper`, the HTTP helpers count for them |
//! | `test-hooks` | unsupported, for littleboss's own tests: the `LITTLEBOSS_TEST_*` variables are read |
//!
//! None is on by default, so that the core keeps its dependencies few.
//!
//! # The wire protocol
//!
//! The supervisor and its child speak over a `SOCK_SEQPACKET` socket pair, one message a
//! packet, listener fds attached with `SCM_RIGHTS`; clients speak to the control socket
//! with length-prefixed frames. Every message starts with its protocol version, read
//! before anything else. A release speaks its own version ([`PROTOCOL`]) and the
//! previous one ([`OLDEST_PROTOCOL`]); each conversation uses the highest both sides
//! speak, so a new supervisor runs a child of the previous release and answers its
//! client, and a side with no version in common is refused with a message naming both.
//!
//! `--littleboss=upgrade` reloads the child to the binary that runs it, then
//! re-executes the supervisor itself as that binary, in place: same pid, same
//! listening sockets, same control socket, same children. The layouts and the upgrade's
//! handover are in `PROTOCOL.md`.
//!
//! Two words, one meaning each: the **handover** is what the supervisor passes to its
//! next image at an upgrade (its state and fds); a **handoff** (and
//! [`Context::hand_over`]) is a connection that moves from one child to the next at a
//! reload.

#![deny(missing_docs)]

pub mod spec;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "hyper")]
pub mod http;

mod builder;
mod bypass;
mod channel;
mod child;
mod child_panic;
mod commands;
mod config;
mod context;
mod control;
mod dir;
mod dispatch;
mod environ;
mod error;
mod flags;
#[cfg(test)]
mod golden;
mod handoff;
#[cfg(feature = "hyper")]
mod http_counts;
mod log_queue;
mod logger;
mod output;
mod secret;
mod signals;
mod socket;
mod state_transfer;
mod supervisor;
mod sys;
mod wind_down;
mod wire;

pub use builder::{Littleboss, MainError, MainResult};
pub use config::Flavor;
pub use context::{Context, Mode};
pub use control::protocol::{OLDEST_PROTOCOL, PROTOCOL, Status};
pub use error::{Error, ListenerProblem, StateProblem};
pub use handoff::{Adoptions, Handoff};
pub use logger::Level;
pub use state_transfer::{Given, Inherited, StateRequest};

/// The longest `lameduck`, `settle`, `ready_timeout`, `probation` or `state_timeout` a
/// program may declare: one hour.
///
/// The attribute refuses a longer one at compile time, the builder when the program
/// runs (exit code 2), so that no deadline the supervisor computes can overflow and no
/// reload hangs on a child for longer.
pub use littleboss_rules::wait::MAX_WAIT;

/// Turns `main` into a self-supervising program: see the [crate documentation](crate).
///
/// ```no_run
/// #[littleboss::main(name = "myblog", listener(https = "tcp::443"), lameduck = "5s")]
/// async fn main(lb: littleboss::Context) -> std::io::Result<()> {
///     let _listener = lb.tcp_listener("https")?;
///     lb.lameduck().await;
///     Ok(())
/// }
/// ```
///
/// `main` may be `async fn` (run on a tokio runtime) or a plain `fn`, takes no argument
/// or one [`Context`], and returns `()` or `Result<(), E>` with `E: Debug`. Every option
/// is checked at compile time; the options are listed in the crate documentation.
pub use littleboss_macros::main;

/// What `#[littleboss::main]` expands to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::builder::Littleboss;
    pub use crate::config::Flavor;
    pub use std::process::ExitCode;
    pub use std::time::Duration;
}
