//! The `#[crudp::module]` attribute. Use it through the `crudp` crate, which documents it.

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use proc_macro::TokenStream;

/// Turns a trait of CRUD methods into a CRUDP module; see the `crudp` crate's documentation.
#[proc_macro_attribute]
pub fn module(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let item = proc_macro2::TokenStream::from(item);
    match expand::expand(args, item.clone()) {
        Ok(tokens) => tokens.into(),
        Err(errors) => fallback::expand(item, errors).into(),
    }
}
