//! The `#[littleboss::main]` attribute. Use it through the `littleboss` crate, which
//! re-exports it and documents it in full; the generated code names only that crate.

mod args;
mod entry;
mod errors;
mod expand;
mod fallback;
mod item;
mod unix_mode;

use proc_macro::TokenStream;

/// Turns `main` into a self-supervising program. Use it as `#[littleboss::main(...)]`.
///
/// ```ignore
/// #[littleboss::main(name = "myblog", listener(https = "tcp::443"), lameduck = "5s")]
/// async fn main(lb: littleboss::Context) -> std::io::Result<()> {
///     let listener = lb.tcp_listener("https")?;
///     lb.ready();
///     // serve until `lb.lameduck()` resolves
///     Ok(())
/// }
/// ```
///
/// The function may be `async fn` (run on a tokio runtime) or a plain `fn`; it takes no
/// argument or one `littleboss::Context`, and returns `()` or `Result<(), E>` with
/// `E: Debug`.
///
/// # Options
///
/// | Option | Value | Default |
/// |---|---|---|
/// | `name = "myblog"` | the service name, `[A-Za-z0-9_-]+` | required |
/// | `listener(https = "tcp::443", ...)` | listeners and their specs `NETWORK:ADDRESS`; may be repeated | none |
/// | `lameduck = "5s"` | how long a winding-down program may take | `"2s"` |
/// | `persist = true` | restart the program when it exits on its own | `false` |
/// | `fallback = false` | go back to the previous binary when a reload fails | `true` |
/// | `calls_ready = true` | the program calls `Context::ready` | `false` |
/// | `settle = "250ms"` | how long a main that does not call `ready` must run to be ready | `"250ms"` |
/// | `ready_timeout = "30s"` | how long to wait for `ready` | `"30s"` |
/// | `probation = "30s"` | after a reload to this binary, how long the new process is on probation, the old one standing by | none |
/// | `probation_5xx = "5%"` | with the HTTP helpers, the share of 5xx responses (1% to 100%, of at least 20) that fails a probation | off |
/// | `standby = false` | during a probation the old process winds down instead of standing by | `true` |
/// | `state_timeout = "5s"` | how long `take_state` waits for the state of the process a reload replaces, at most `ready_timeout` | `"5s"` (or `ready_timeout`, if shorter) |
/// | `flavor = "current_thread"` | the tokio runtime of an `async` main: `"current_thread"` or `"multi_thread"` | `"multi_thread"` |
/// | `flag = "lb"` | the control flag's name: `--lb=start` | `"littleboss"` |
/// | `supervisor_init = my_init` | a `fn() -> ()` or `fn() -> Result<(), E>` run once in the supervisor, after binding, before the first child | none |
/// | `user = "nobody"` | the user every child runs as (the supervisor must be root) | the supervisor's |
/// | `group = "nogroup"` | the group every child runs as (needs `user`) | the user's primary group |
/// | `unix_mode = "0660"` | the mode of `unix:` listeners' socket files | as the umask leaves it |
/// | `metrics = "metrics"` | a declared listener the supervisor serves its metrics on (`GET /metrics`) instead of passing it to the program; needs littleboss's `metrics` feature | none |
///
/// A network is `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6` or `unix`; an address is
/// empty (the listener is off until its flag `--NAME=ADDR` gives one), `:PORT`,
/// `HOST:PORT` or `[IPV6]:PORT`, or for `unix` a path or `@name` (abstract). A duration
/// is an integer followed by `ms`, `s` or `m`, at most an hour (`"60m"`), a
/// `ready_timeout` and a `state_timeout` at least `"1ms"`, and a `state_timeout` at
/// most the `ready_timeout`. The control flag and listener names are
/// `[A-Za-z0-9_-]+`, not starting with `-`, and no listener is named like the control
/// flag. All of it is checked at compile time, by the same rules (`littleboss-rules`) that
/// the builder applies when the program runs, and with the same messages.
///
/// # Equivalent code without the macro
///
/// The example above is the same as:
///
/// ```ignore
/// fn main() -> std::process::ExitCode {
///     async fn serve(lb: littleboss::Context) -> std::io::Result<()> {
///         let listener = lb.tcp_listener("https")?;
///         lb.ready();
///         Ok(())
///     }
///     littleboss::Littleboss::new("myblog")
///         .listener("https", "tcp::443")
///         .lameduck(std::time::Duration::from_secs(5))
///         .run(|lb| serve(lb))
/// }
/// ```
///
/// A plain `fn` main goes to `run_sync` instead of `run`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::main(args.into(), item.into()).into()
}
