//! The `#[littleboss::main]` attribute. Use it through the `littleboss` crate.

use proc_macro::TokenStream;

/// Turns `main` into a self-supervising program; see `littleboss::main`.
#[proc_macro_attribute]
pub fn main(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
