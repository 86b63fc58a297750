//! The attribute's arguments: read key by key into [`Options`], then built into a
//! [`Config`] once the function is known.
//!
//! A mistake in a value (a bad spec, a repeated key) is recorded and parsing goes on, so
//! that one compile reports them all; only a syntax error stops it.

use std::time::Duration;

use littleboss_rules::names::{self, DEFAULT_FLAG, NameError};
use littleboss_rules::spec::ListenerSpec;
use littleboss_rules::wait::{self, Wait};
use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, Lit, LitStr, Token, token};

use crate::errors::Errors;
use crate::item::MainFn;
use crate::unix_mode;

/// Every option, in the order messages list them.
const OPTIONS: &[&str] = &[
    "name",
    "listener",
    "lameduck",
    "persist",
    "fallback",
    "calls_ready",
    "settle",
    "ready_timeout",
    "probation",
    "probation_5xx",
    "standby",
    "state_timeout",
    "flavor",
    "flag",
    "supervisor_init",
    "user",
    "group",
    "unix_mode",
    "metrics",
];

/// The flavors, in the order messages list them.
const FLAVORS: &[&str] = &["current_thread", "multi_thread"];

/// The tokio runtime of an `async` main.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    CurrentThread,
    MultiThread,
}

/// A declared listener: its name and its spec, both checked (the name in
/// [`Options::build`], once the control flag's name is known).
pub(crate) struct Listener {
    pub name: LitStr,
    pub spec: LitStr,
}

/// The checked configuration; `None` leaves the runtime's default.
pub(crate) struct Config {
    pub name: LitStr,
    pub listeners: Vec<Listener>,
    /// Whole milliseconds, at most `MAX_WAIT`, as each wait below.
    pub lameduck: Option<Duration>,
    pub persist: Option<bool>,
    pub fallback: Option<bool>,
    pub calls_ready: Option<bool>,
    pub settle: Option<Duration>,
    pub ready_timeout: Option<Duration>,
    pub probation: Option<Duration>,
    pub probation_5xx: Option<u8>,
    pub standby: Option<bool>,
    pub state_timeout: Option<Duration>,
    pub flavor: Option<Flavor>,
    pub flag: Option<LitStr>,
    pub supervisor_init: Option<syn::Path>,
    pub user: Option<LitStr>,
    pub group: Option<LitStr>,
    pub unix_mode: Option<u32>,
    /// The listener the supervisor serves its metrics on.
    pub metrics: Option<LitStr>,
}

/// The options as read so far, with the mistakes found on the way.
#[derive(Default)]
pub(crate) struct Options {
    /// The keys given, to report one given twice.
    seen: Vec<String>,
    name: Option<LitStr>,
    listeners: Vec<Listener>,
    lameduck: Option<Duration>,
    persist: Option<bool>,
    fallback: Option<bool>,
    calls_ready: Option<bool>,
    settle: Option<Duration>,
    ready_timeout: Option<Duration>,
    probation: Option<Duration>,
    probation_5xx: Option<u8>,
    standby: Option<bool>,
    /// With the span of its value, for the error of one longer than `ready_timeout`.
    state_timeout: Option<(Duration, Span)>,
    /// With the span of the `flavor` key, for the error on a non-async main.
    flavor: Option<(Flavor, Span)>,
    flag: Option<LitStr>,
    supervisor_init: Option<syn::Path>,
    user: Option<LitStr>,
    group: Option<LitStr>,
    unix_mode: Option<u32>,
    metrics: Option<LitStr>,
    errors: Errors,
    /// Whether reading stopped at a syntax error.
    syntax_error: bool,
}

impl Options {
    /// Reads the attribute's arguments.
    pub fn parse(args: TokenStream) -> Options {
        let mut options = Options::default();
        let parsed = syn::meta::parser(|meta| options.parse_option(&meta)).parse2(args);
        if let Err(error) = parsed {
            options.errors.push(error);
            options.syntax_error = true;
        }
        options
    }

    /// Checks what depends on the function too, and gives the configuration or every
    /// error found.
    pub fn build(mut self, main: &MainFn) -> syn::Result<Config> {
        // After a syntax error the options that follow it were never read.
        if !self.seen("name") && !self.syntax_error {
            self.errors.push(missing_name());
        }
        if let Some((_, span)) = self.flavor {
            if !main.is_async() {
                self.errors.push(syn::Error::new(
                    span,
                    "`flavor` applies only to an async main",
                ));
            }
        }
        let flag = self
            .flag
            .as_ref()
            .map_or_else(|| DEFAULT_FLAG.to_string(), LitStr::value);
        for listener in &self.listeners {
            // An identifier may still be one the command line cannot spell (`café`).
            if let Err(e) = names::check_listener_name(&listener.name.value(), &flag) {
                self.errors.push(syn::Error::new(listener.name.span(), e));
            }
        }
        if let Some(metrics) = &self.metrics {
            let declared: Vec<String> = self.listeners.iter().map(|l| l.name.value()).collect();
            if !declared.contains(&metrics.value()) {
                self.errors.push(syn::Error::new(
                    metrics.span(),
                    littleboss_rules::names::metrics_not_declared(&metrics.value(), &declared),
                ));
            }
        }
        if let Some((state_timeout, span)) = self.state_timeout {
            // A `ready_timeout` given and refused is reported already.
            let refused = self.seen("ready_timeout") && self.ready_timeout.is_none();
            let ready_timeout = self.ready_timeout.unwrap_or(wait::DEFAULT_READY_TIMEOUT);
            if !refused {
                if let Err(e) = wait::check_state_timeout(state_timeout, ready_timeout) {
                    self.errors.push(syn::Error::new(span, e));
                }
            }
        }
        if let (Some(group), None) = (&self.group, &self.user) {
            self.errors.push(syn::Error::new(
                group.span(),
                littleboss_rules::user::GROUP_WITHOUT_USER,
            ));
        }
        self.errors.finish()?;
        Ok(Config {
            // Set whenever no error was recorded: a missing or invalid name is one.
            name: self.name.ok_or_else(missing_name)?,
            listeners: self.listeners,
            lameduck: self.lameduck,
            persist: self.persist,
            fallback: self.fallback,
            calls_ready: self.calls_ready,
            settle: self.settle,
            ready_timeout: self.ready_timeout,
            probation: self.probation,
            probation_5xx: self.probation_5xx,
            standby: self.standby,
            state_timeout: self.state_timeout.map(|(wait, _)| wait),
            flavor: self.flavor.map(|(flavor, _)| flavor),
            flag: self.flag,
            supervisor_init: self.supervisor_init,
            user: self.user,
            group: self.group,
            unix_mode: self.unix_mode,
            metrics: self.metrics,
        })
    }

    /// Reads one `KEY = VALUE` or `listener(...)`.
    fn parse_option(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some(key) = meta.path.get_ident().cloned() else {
            self.errors
                .push(meta.error(unknown_option(&path_text(&meta.path))));
            return skip_value(meta);
        };
        let result = match key.to_string().as_str() {
            "name" => {
                let value = value(meta, "name = \"myblog\"")?;
                self.set_name(&key, &value)
            }
            "listener" => return self.parse_listeners(&key, meta),
            "lameduck" | "settle" | "ready_timeout" | "probation" | "state_timeout" => {
                let value = value(meta, &format!("{key} = \"2s\""))?;
                self.set_duration(&key, &value)
            }
            "probation_5xx" => {
                let value = value(meta, "probation_5xx = \"5%\"")?;
                self.set_share(&key, &value)
            }
            "persist" | "fallback" | "calls_ready" | "standby" => {
                let value = value(meta, &format!("{key} = true"))?;
                self.set_bool(&key, &value)
            }
            "flavor" => {
                let value = value(meta, "flavor = \"current_thread\"")?;
                self.set_flavor(&key, &value)
            }
            "flag" => {
                let value = value(meta, "flag = \"lb\"")?;
                self.set_flag(&key, &value)
            }
            "user" | "group" => {
                let value = value(meta, &format!("{key} = \"nobody\""))?;
                self.set_identity(&key, &value)
            }
            "unix_mode" => {
                let value = value(meta, "unix_mode = \"0660\"")?;
                self.set_unix_mode(&key, &value)
            }
            "metrics" => {
                let value = value(meta, "metrics = \"metrics\"")?;
                self.first_time(&key)
                    .and_then(|()| string(&key, &value, "metrics = \"metrics\""))
                    .map(|lit| self.metrics = Some(lit))
            }
            "supervisor_init" => {
                let value = value(meta, "supervisor_init = my_init")?;
                self.set_supervisor_init(&key, &value)
            }
            other => {
                self.errors
                    .push(syn::Error::new(key.span(), unknown_option(other)));
                return skip_value(meta);
            }
        };
        self.errors.record(result);
        Ok(())
    }

    /// Reads `listener(NAME = "SPEC", ...)`.
    fn parse_listeners(&mut self, key: &Ident, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        if !meta.input.peek(token::Paren) {
            self.errors.push(syn::Error::new(
                key.span(),
                "`listener` takes a list, as in `listener(https = \"tcp::443\")`",
            ));
            return skip_value(meta);
        }
        if parenthesized_empty(meta.input)? {
            self.errors.push(syn::Error::new(
                key.span(),
                "empty `listener()`; declare listeners as in `listener(https = \"tcp::443\")`",
            ));
            return skip_value(meta);
        }
        meta.parse_nested_meta(|inner| {
            let Some(name) = inner.path.get_ident().cloned() else {
                self.errors.push(inner.error(
                    "a listener name is an identifier, as in `listener(https = \"tcp::443\")`",
                ));
                return skip_value(&inner);
            };
            let value = value(&inner, &format!("{name} = \"tcp::443\""))?;
            let added = self.add_listener(&name, &value);
            self.errors.record(added);
            Ok(())
        })
    }

    /// Whether `key` was given.
    fn seen(&self, key: &str) -> bool {
        self.seen.iter().any(|k| k == key)
    }

    /// Notes that `key` is given, or reports it given twice.
    fn first_time(&mut self, key: &Ident) -> syn::Result<()> {
        let text = key.to_string();
        if self.seen(&text) {
            return Err(syn::Error::new(
                key.span(),
                format!("`{text}` set multiple times"),
            ));
        }
        self.seen.push(text);
        Ok(())
    }

    /// `name = "myblog"`.
    fn set_name(&mut self, key: &Ident, value: &Expr) -> syn::Result<()> {
        self.first_time(key)?;
        let lit = string(key, value, "name = \"myblog\"")?;
        names::check_service_name(&lit.value()).map_err(|e| syn::Error::new(lit.span(), e))?;
        self.name = Some(LitStr::new(&lit.value(), lit.span()));
        Ok(())
    }

    /// `https = "tcp::443"` inside `listener(...)`.
    fn add_listener(&mut self, name: &Ident, value: &Expr) -> syn::Result<()> {
        let text = name.unraw().to_string();
        if self.listeners.iter().any(|l| l.name.value() == text) {
            return Err(syn::Error::new(
                name.span(),
                NameError::Duplicate { name: text },
            ));
        }
        let example = format!("{text} = \"tcp::443\"");
        let Some(Lit::Str(lit)) = lit(value) else {
            return Err(syn::Error::new_spanned(
                value,
                format!("listener `{text}` takes a spec string, as in `{example}`"),
            ));
        };
        ListenerSpec::parse(&lit.value()).map_err(|e| syn::Error::new(lit.span(), e))?;
        self.listeners.push(Listener {
            name: LitStr::new(&text, name.span()),
            spec: LitStr::new(&lit.value(), lit.span()),
        });
        Ok(())
    }

    /// `probation_5xx = "5%"`.
    fn set_share(&mut self, key: &Ident, value: &Expr) -> syn::Result<()> {
        self.first_time(key)?;
        let lit = string(key, value, "probation_5xx = \"5%\"")?;
        let pct = littleboss_rules::share::parse(&lit.value())
            .map_err(|e| syn::Error::new(lit.span(), e))?;
        self.probation_5xx = Some(pct);
        Ok(())
    }

    /// `lameduck`, `settle`, `ready_timeout`, `probation` or `state_timeout` `= "2s"`.
    fn set_duration(&mut self, key: &Ident, value: &Expr) -> syn::Result<()> {
        self.first_time(key)?;
        let lit = string(key, value, &format!("{key} = \"2s\""))?;
        let unknown = || syn::Error::new(key.span(), unknown_option(&key.to_string()));
        let wait = Wait::from_name(&key.to_string()).ok_or_else(unknown)?;
        let duration = wait
            .parse(&lit.value())
            .map_err(|e| syn::Error::new(lit.span(), e))?;
        let slot = match wait {
            Wait::Lameduck => &mut self.lameduck,
            Wait::Settle => &mut self.settle,
            Wait::ReadyTimeout => &mut self.ready_timeout,
            Wait::Probation => &mut self.probation,
            Wait::StateTimeout => {
                self.state_timeout = Some((duration, lit.span()));
                return Ok(());
            }
            _ => return Err(unknown()),
        };
        *slot = Some(duration);
        Ok(())
    }

    /// `persist`, `fallback`, `calls_ready` or `standby` `= true`.
    fn set_bool(&mut self, key: &Ident, value: &Expr) -> syn::Result<()> {
        self.first_time(key)?;
        let Some(Lit::Bool(lit)) = lit(value) else {
            return Err(syn::Error::new_spanned(
                value,
                format!("`{key}` takes `true` or `false`"),
            ));
        };
        let slot = if key == "persist" {
            &mut self.persist
        } else if key == "fallback" {
            &mut self.fallback
        } else if key == "standby" {
            &mut self.standby
        } else {
            &mut self.calls_ready
        };
        *slot = Some(lit.value);
        Ok(())
    }

    /// `flag = "lb"`: the control flag's name.
    fn set_flag(&mut self, key: &Ident, value: &Expr) -> syn::Result<()> {
        self.first_time(key)?;
        let lit = string(key, value, "flag = \"lb\"")?;
        names::check_flag_name(&lit.value()).map_err(|e| syn::Error::new(lit.span(), e))?;
        self.flag = Some(lit);
        Ok(())
    }

    /// `user = "nobody"` or `group = "nogroup"`.
    fn set_identity(&mut self, key: &Ident, value: &Expr) -> syn::Result<()> {
        self.first_time(key)?;
        let lit = string(key, value, &format!("{key} = \"nobody\""))?;
        if lit.value().is_empty() {
            return Err(syn::Error::new(
                lit.span(),
                format!("`{key}` is empty; name a {key}, as in `{key} = \"nobody\"`"),
            ));
        }
        if key == "user" {
            self.user = Some(lit);
        } else {
            self.group = Some(lit);
        }
        Ok(())
    }

    /// `unix_mode = "0660"`.
    fn set_unix_mode(&mut self, key: &Ident, value: &Expr) -> syn::Result<()> {
        self.first_time(key)?;
        let lit = string(key, value, "unix_mode = \"0660\"")?;
        let mode =
            unix_mode::parse_mode(&lit.value()).map_err(|e| syn::Error::new(lit.span(), e))?;
        self.unix_mode = Some(mode);
        Ok(())
    }

    /// `supervisor_init = path::to::function`.
    fn set_supervisor_init(&mut self, key: &Ident, value: &Expr) -> syn::Result<()> {
        self.first_time(key)?;
        match value {
            Expr::Path(path) if path.attrs.is_empty() && path.qself.is_none() => {
                self.supervisor_init = Some(path.path.clone());
                Ok(())
            }
            _ => Err(syn::Error::new_spanned(
                value,
                "`supervisor_init` takes the path of a function, as in `supervisor_init = my_init`",
            )),
        }
    }

    /// `flavor = "current_thread"`.
    fn set_flavor(&mut self, key: &Ident, value: &Expr) -> syn::Result<()> {
        self.first_time(key)?;
        let lit = string(key, value, "flavor = \"current_thread\"")?;
        let flavor = match lit.value().as_str() {
            "current_thread" => Flavor::CurrentThread,
            "multi_thread" => Flavor::MultiThread,
            other => {
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "unknown flavor `{other}`; the flavors are {}",
                        backticked(FLAVORS)
                    ),
                ));
            }
        };
        self.flavor = Some((flavor, key.span()));
        Ok(())
    }
}

/// The `VALUE` of `KEY = VALUE`; `example` shows the whole option in the error.
fn value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<Expr> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("expected `=`, as in `{example}`")));
    }
    meta.value()?.parse()
}

/// Skips what follows an option that is not understood: `= VALUE`, `(...)` or nothing.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// Whether the `(...)` ahead in `input` is empty.
fn parenthesized_empty(input: ParseStream<'_>) -> syn::Result<bool> {
    let fork = input.fork();
    let content;
    syn::parenthesized!(content in fork);
    Ok(content.is_empty())
}

/// The literal that `expr` is, looking through the invisible groups of `macro_rules!`.
fn lit(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(expr) if expr.attrs.is_empty() => Some(&expr.lit),
        Expr::Group(group) => lit(&group.expr),
        _ => None,
    }
}

/// The string literal that `value` must be.
fn string(key: &Ident, value: &Expr, example: &str) -> syn::Result<LitStr> {
    match lit(value) {
        Some(Lit::Str(lit)) => Ok(lit.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes a string, as in `{example}`"),
        )),
    }
}

/// The choices as "`a`, `b`, `c`".
fn backticked(choices: &[&str]) -> String {
    choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_option(key: &str) -> String {
    format!(
        "unknown option `{key}`; the options are {}",
        backticked(OPTIONS)
    )
}

fn missing_name() -> syn::Error {
    syn::Error::new(
        Span::call_site(),
        "missing `name = \"...\"`: every littleboss program names its service",
    )
}

/// `a::b` as written, for messages.
fn path_text(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let lead = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{lead}{}", segments.join("::"))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn build(args: TokenStream, main: TokenStream) -> syn::Result<Config> {
        let main: MainFn = syn::parse2(main).unwrap();
        Options::parse(args).build(&main)
    }

    fn messages(args: TokenStream, main: TokenStream) -> Vec<String> {
        match build(args, main) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn reads_every_option() {
        let config = build(
            quote!(
                name = "myblog",
                listener(https = "tcp::443", r#type = "udp:"),
                lameduck = "5s",
                persist = true,
                fallback = false,
                calls_ready = true,
                settle = "250ms",
                ready_timeout = "1m",
                listener(dns = "udp:127.0.0.1:5353"),
                flavor = "current_thread",
                probation = "30s",
                probation_5xx = "5%",
                standby = false,
                state_timeout = "10s",
            ),
            quote!(
                async fn main() {}
            ),
        )
        .unwrap();
        assert_eq!(config.name.value(), "myblog");
        let listeners: Vec<(String, String)> = config
            .listeners
            .iter()
            .map(|l| (l.name.value(), l.spec.value()))
            .collect();
        assert_eq!(
            listeners,
            [
                ("https".into(), "tcp::443".into()),
                ("type".into(), "udp:".into()),
                ("dns".into(), "udp:127.0.0.1:5353".into()),
            ]
        );
        assert_eq!(config.lameduck, Some(Duration::from_secs(5)));
        assert_eq!(config.persist, Some(true));
        assert_eq!(config.fallback, Some(false));
        assert_eq!(config.calls_ready, Some(true));
        assert_eq!(config.settle, Some(Duration::from_millis(250)));
        assert_eq!(config.ready_timeout, Some(Duration::from_secs(60)));
        assert_eq!(config.probation, Some(Duration::from_secs(30)));
        assert_eq!(config.probation_5xx, Some(5));
        assert_eq!(config.standby, Some(false));
        assert_eq!(config.state_timeout, Some(Duration::from_secs(10)));
        assert_eq!(config.flavor, Some(Flavor::CurrentThread));
    }

    #[test]
    fn leaves_defaults_to_the_runtime() {
        let config = build(
            quote!(name = "x"),
            quote!(
                fn main() {}
            ),
        )
        .unwrap();
        assert!(config.listeners.is_empty());
        assert_eq!(config.lameduck, None);
        assert_eq!(config.persist, None);
        assert_eq!(config.state_timeout, None);
        assert_eq!(config.flavor, None);
    }

    #[test]
    fn reports_every_mistake() {
        let cases: &[(TokenStream, &[&str])] = &[
            (
                quote!(),
                &["missing `name = \"...\"`: every littleboss program names its service"],
            ),
            (
                quote!(name = "a", name = "b"),
                &["`name` set multiple times"],
            ),
            (
                quote!(name = "a", port = 80, flavor = "multi_thread"),
                &[
                    "unknown option `port`; the options are `name`, `listener`, `lameduck`, `persist`, `fallback`, `calls_ready`, `settle`, `ready_timeout`, `probation`, `probation_5xx`, `standby`, `state_timeout`, `flavor`, `flag`, `supervisor_init`, `user`, `group`, `unix_mode`, `metrics`",
                ],
            ),
            (
                quote!(name = "a", listener(a = "tcp:"), listener(a = "udp:")),
                &["listener \"a\" declared twice"],
            ),
            (
                quote!(name = "a", listener(littleboss = "tcp:")),
                &[
                    "listener name \"littleboss\" is taken by the --littleboss control flag; choose another name",
                ],
            ),
            (
                quote!(name = "a", listener = "tcp:", listener()),
                &[
                    "`listener` takes a list, as in `listener(https = \"tcp::443\")`",
                    "empty `listener()`; declare listeners as in `listener(https = \"tcp::443\")`",
                ],
            ),
            (
                quote!(name = "a", listener(a = 443)),
                &["listener `a` takes a spec string, as in `a = \"tcp::443\"`"],
            ),
            (
                quote!(name = myblog, persist = "yes", settle = 5, flavor = "local"),
                &[
                    "`name` takes a string, as in `name = \"myblog\"`",
                    "`persist` takes `true` or `false`",
                    "`settle` takes a string, as in `settle = \"2s\"`",
                    "unknown flavor `local`; the flavors are `current_thread`, `multi_thread`",
                ],
            ),
            (
                quote!(
                    name = "a",
                    probation = "61m",
                    probation_5xx = "0%",
                    standby = "no"
                ),
                &[
                    "probation of 61m is longer than the maximum of 60m (one hour)",
                    "probation_5xx of \"0%\" is not a share from 1% to 100%; write an integer followed by %, as in \"5%\"",
                    "`standby` takes `true` or `false`",
                ],
            ),
            (
                quote!(name = "a", probation_5xx = 5),
                &["`probation_5xx` takes a string, as in `probation_5xx = \"5%\"`"],
            ),
            (
                quote!(
                    name = "a",
                    lameduck = "18446744073709551615ms",
                    settle = "61m",
                    ready_timeout = "0s"
                ),
                &[
                    "lameduck of 18446744073709551615ms is longer than the maximum of 60m (one hour)",
                    "settle of 61m is longer than the maximum of 60m (one hour)",
                    "ready_timeout of 0s would fail every child before it could say hello; the shortest is 1ms",
                ],
            ),
            (
                quote!(
                    name = "a",
                    lameduck = "60m",
                    settle = "0ms",
                    ready_timeout = "3600000ms"
                ),
                &[],
            ),
            // At most the ready_timeout, declared or the default.
            (
                quote!(name = "a", state_timeout = "40s"),
                &[
                    "state_timeout of 40s is longer than ready_timeout of 30s; the new process takes its state before it is ready, so state_timeout is at most ready_timeout",
                ],
            ),
            (
                quote!(name = "a", ready_timeout = "2s", state_timeout = "2500ms"),
                &[
                    "state_timeout of 2500ms is longer than ready_timeout of 2s; the new process takes its state before it is ready, so state_timeout is at most ready_timeout",
                ],
            ),
            (
                quote!(name = "a", state_timeout = "0s", ready_timeout = "1m"),
                &[
                    "state_timeout of 0s would fail every take_state before its answer could come; the shortest is 1ms",
                ],
            ),
            // A ready_timeout refused is said once, not again by the state_timeout.
            (
                quote!(name = "a", state_timeout = "5s", ready_timeout = "0s"),
                &[
                    "ready_timeout of 0s would fail every child before it could say hello; the shortest is 1ms",
                ],
            ),
            (
                quote!(name = "a", state_timeout = "30s", ready_timeout = "1m"),
                &[],
            ),
            (
                quote!(
                    name = "a",
                    listener(café = "tcp:", lb = "tcp:"),
                    flag = "lb"
                ),
                &[
                    "invalid listener name \"café\": a name is one or more of A-Z, a-z, 0-9, '_' and '-', not starting with '-'",
                    "listener name \"lb\" is taken by the --lb control flag; choose another name",
                ],
            ),
            (
                quote!(name = "my blog", flag = "--lb", listener(http = "tcp:80")),
                &[
                    "invalid service name \"my blog\": a name is one or more of A-Z, a-z, 0-9, '_' and '-'",
                    "invalid control flag name \"--lb\": it may not start with '-', since the dashes of a flag are not part of its name (\"lb\" gives --lb=MODE)",
                    "address \"80\" is not HOST:PORT, :PORT or [IPV6]:PORT; for port 80 on every address, write \":80\"",
                ],
            ),
            // A syntax error stops the reading; no missing `name` is reported after it.
            (
                quote!(lameduck, name = "a"),
                &["expected `=`, as in `lameduck = \"2s\"`"],
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(
                messages(
                    args.clone(),
                    quote!(
                        async fn main() {}
                    )
                ),
                *expected,
                "{args}"
            );
        }
    }

    #[test]
    fn flavor_needs_an_async_main() {
        assert_eq!(
            messages(
                quote!(name = "a", flavor = "current_thread"),
                quote!(
                    fn main() {}
                )
            ),
            ["`flavor` applies only to an async main"]
        );
    }
}
