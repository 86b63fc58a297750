//! The function under the attribute, and what a littleboss main may look like.

use proc_macro2::{Ident, TokenStream};
use quote::{ToTokens, TokenStreamExt};
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, FnArg, Signature, Visibility, braced, token};

use crate::errors::Errors;

/// The user's function. Its body is kept as tokens, not parsed into statements, so that
/// a half-written body still expands and an IDE can complete inside it.
pub(crate) struct MainFn {
    /// The outer attributes (`#[doc]`, `#[allow]`, ...), kept on the generated `main`.
    pub attrs: Vec<Attribute>,
    /// The visibility, kept on the generated `main`.
    pub vis: Visibility,
    /// The signature as written.
    pub sig: Signature,
    brace: token::Brace,
    body: TokenStream,
}

impl Parse for MainFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<MainFn> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let content;
        let brace = braced!(content in input);
        let body = content.parse()?;
        Ok(MainFn {
            attrs,
            vis,
            sig,
            brace,
            body,
        })
    }
}

impl MainFn {
    /// Whether the function is an `async fn`.
    pub fn is_async(&self) -> bool {
        self.sig.asyncness.is_some()
    }

    /// The function as written, renamed to `ident`, without its outer attributes.
    pub fn renamed(&self, ident: &str) -> TokenStream {
        let mut sig = self.sig.clone();
        sig.ident = Ident::new(ident, self.sig.ident.span());
        let mut tokens = sig.into_token_stream();
        self.brace
            .surround(&mut tokens, |tokens| tokens.append_all(self.body.clone()));
        tokens
    }

    /// Reports what a littleboss main cannot be: generic, `const`, `unsafe`, `extern`, a
    /// method, or a function of more than one argument.
    pub fn check(&self) -> Result<(), syn::Error> {
        let sig = &self.sig;
        let mut errors = Errors::default();
        let mut error = |tokens: &dyn ToTokens, message: &str| {
            errors.push(syn::Error::new_spanned(tokens, message));
        };
        if let Some(constness) = &sig.constness {
            error(constness, "a littleboss main cannot be `const`");
        }
        if let Some(unsafety) = &sig.unsafety {
            error(unsafety, "a littleboss main cannot be `unsafe`");
        }
        if let Some(abi) = &sig.abi {
            error(abi, "a littleboss main cannot be `extern`");
        }
        if !sig.generics.params.is_empty() {
            error(
                &sig.generics,
                "a littleboss main cannot have generic parameters",
            );
        } else if let Some(where_clause) = &sig.generics.where_clause {
            error(
                where_clause,
                "a littleboss main cannot have a `where` clause",
            );
        }
        for (i, input) in sig.inputs.iter().enumerate() {
            match input {
                FnArg::Receiver(receiver) => {
                    error(receiver, "a littleboss main cannot take `self`");
                }
                FnArg::Typed(_) if i > 0 => error(
                    input,
                    "a littleboss main takes at most one argument, `lb: littleboss::Context`",
                ),
                FnArg::Typed(_) => {}
            }
        }
        if let Some(variadic) = &sig.variadic {
            error(variadic, "a littleboss main cannot be variadic");
        }
        errors.finish()
    }
}
