//! The code the attribute generates: a plain `main` that runs the user's function through
//! the runtime's builder.

use std::time::Duration;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ReturnType};

use crate::args::{Config, Flavor};
use crate::item::MainFn;

/// The name the user's function gets inside the generated `main`.
pub(crate) const USER_MAIN: &str = "__littleboss_main";

/// Expands to
///
/// ```text
/// fn main() -> ::littleboss::__private::ExitCode {
///     async fn __littleboss_main(lb: littleboss::Context) -> RET { BODY }
///     ::littleboss::__private::Littleboss::new("NAME")
///         .listener("NAME", "SPEC") /* and each option given */
///         .run(|__littleboss_ctx| __littleboss_main(__littleboss_ctx))
/// }
/// ```
///
/// with the user's attributes and visibility on `main`, and `run_sync` for a plain `fn`.
pub(crate) fn main(main: &MainFn, config: &Config) -> TokenStream {
    let attrs = &main.attrs;
    let vis = &main.vis;
    let ident = &main.sig.ident;
    let user_fn = main.renamed(USER_MAIN);
    let user_main = Ident::new(USER_MAIN, main.sig.ident.span());

    let name = &config.name;
    let mut builder = quote!(::littleboss::__private::Littleboss::new(#name));
    for listener in &config.listeners {
        let (name, spec) = (&listener.name, &listener.spec);
        builder.extend(quote!(.listener(#name, #spec)));
    }
    // The waits are whole milliseconds, at most an hour: `from_millis` holds them.
    let duration = |wait: Duration| {
        let millis = Literal::u128_unsuffixed(wait.as_millis());
        quote!(::littleboss::__private::Duration::from_millis(#millis))
    };
    if let Some(wait) = config.lameduck {
        let lameduck = duration(wait);
        builder.extend(quote!(.lameduck(#lameduck)));
    }
    if let Some(persist) = config.persist {
        builder.extend(quote!(.persist(#persist)));
    }
    if let Some(fallback) = config.fallback {
        builder.extend(quote!(.fallback(#fallback)));
    }
    if let Some(calls_ready) = config.calls_ready {
        builder.extend(quote!(.calls_ready(#calls_ready)));
    }
    if let Some(wait) = config.settle {
        let settle = duration(wait);
        builder.extend(quote!(.settle(#settle)));
    }
    if let Some(wait) = config.ready_timeout {
        let ready_timeout = duration(wait);
        builder.extend(quote!(.ready_timeout(#ready_timeout)));
    }
    if let Some(wait) = config.probation {
        let probation = duration(wait);
        builder.extend(quote!(.probation(#probation)));
    }
    if let Some(pct) = config.probation_5xx {
        let pct = Literal::u8_unsuffixed(pct);
        builder.extend(quote!(.probation_5xx(#pct)));
    }
    if let Some(standby) = config.standby {
        builder.extend(quote!(.standby(#standby)));
    }
    if let Some(wait) = config.state_timeout {
        let state_timeout = duration(wait);
        builder.extend(quote!(.state_timeout(#state_timeout)));
    }
    if let Some(flag) = &config.flag {
        builder.extend(quote!(.flag(#flag)));
    }
    if let Some(metrics) = &config.metrics {
        builder.extend(quote!(.metrics(#metrics)));
    }
    if let Some(user) = &config.user {
        builder.extend(quote!(.user(#user)));
    }
    if let Some(group) = &config.group {
        builder.extend(quote!(.group(#group)));
    }
    if let Some(mode) = config.unix_mode {
        let mode = Literal::u32_unsuffixed(mode);
        builder.extend(quote!(.unix_mode(#mode)));
    }
    if let Some(init) = &config.supervisor_init {
        builder.extend(quote!(.supervisor_init(#init)));
    }
    if let Some(flavor) = config.flavor {
        let flavor = match flavor {
            Flavor::CurrentThread => quote!(CurrentThread),
            Flavor::MultiThread => quote!(MultiThread),
        };
        builder.extend(quote!(.flavor(::littleboss::__private::Flavor::#flavor)));
    }

    // `run` requires the return type to be a `MainResult`: on the return type's span, an
    // unfit one is reported there.
    let output_span = match &main.sig.output {
        ReturnType::Default => main.sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let run = if main.is_async() {
        quote_spanned!(output_span=> run)
    } else {
        quote_spanned!(output_span=> run_sync)
    };
    let call = if let Some(arg) = main.sig.inputs.first() {
        // A `Context` passed to an argument of another type is reported on its type.
        let span = match arg {
            FnArg::Typed(arg) => arg.ty.span(),
            FnArg::Receiver(_) => arg.span(),
        };
        let ctx = Ident::new("__littleboss_ctx", Span::call_site().located_at(span));
        quote!(|__littleboss_ctx| #user_main(#ctx))
    } else {
        quote!(|_| #user_main())
    };

    quote! {
        #(#attrs)*
        #vis fn #ident() -> ::littleboss::__private::ExitCode {
            #user_fn
            #builder.#run(#call)
        }
    }
}
