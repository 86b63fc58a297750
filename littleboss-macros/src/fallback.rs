//! What the attribute emits when it reports an error: the user's code, kept so that the
//! rest of the program and an IDE still see it, plus `compile_error!`s.

use proc_macro2::TokenStream;
use quote::quote;

use crate::expand::USER_MAIN;
use crate::item::MainFn;

/// The user's function, renamed and nested in a plain `fn main() {}` so that its body is
/// still type-checked but no error besides `error` comes from its shape (an `async` or
/// argument-taking `main` would otherwise be rejected as a program entry point).
pub(crate) fn main(main: &MainFn, error: syn::Error) -> TokenStream {
    let attrs = &main.attrs;
    let vis = &main.vis;
    let ident = &main.sig.ident;
    let user_fn = main.renamed(USER_MAIN);
    let error = error.into_compile_error();
    quote! {
        #(#attrs)*
        #vis fn #ident() {
            #[allow(dead_code)]
            #user_fn
        }
        #error
    }
}

/// An item that is not a function, as written, plus `error`.
pub(crate) fn item(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}
