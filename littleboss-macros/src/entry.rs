//! The attribute from start to end: read the function and the options, then expand, or
//! fall back with the errors.

use proc_macro2::TokenStream;

use crate::args::Options;
use crate::item::MainFn;
use crate::{expand, fallback};

/// `#[littleboss::main(ARGS)] ITEM`.
pub(crate) fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let main: MainFn = match syn::parse2(item.clone()) {
        Ok(main) => main,
        Err(error) => {
            let error = match syn::parse2::<syn::Item>(item.clone()) {
                Ok(syn::Item::Fn(_)) | Err(_) => error,
                Ok(other) => syn::Error::new_spanned(
                    other,
                    "`#[littleboss::main]` goes on a function, as in `async fn main(lb: littleboss::Context)`",
                ),
            };
            return fallback::item(item, error);
        }
    };
    let config = Options::parse(args).build(&main);
    let checked = main.check();
    match (config, checked) {
        (Ok(config), Ok(())) => expand::main(&main, &config),
        (Ok(_), Err(error)) | (Err(error), Ok(())) => fallback::main(&main, error),
        (Err(mut error), Err(more)) => {
            error.combine(more);
            fallback::main(&main, error)
        }
    }
}
