//! What to emit when the input is wrong: the errors, next to the user's item as written, so
//! that one mistake does not set off a cascade of "cannot find trait" errors.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{ItemTrait, TraitItem};

pub(crate) fn expand(item: TokenStream, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    let item = match syn::parse2::<ItemTrait>(item.clone()) {
        Ok(mut definition) => {
            // A second method of the same name, and the body of a method, are already reported;
            // rustc would report the first again, and warn about unused parameters in the second.
            for item in &mut definition.items {
                if let TraitItem::Fn(f) = item
                    && f.default.take().is_some()
                {
                    f.semi_token = Some(Default::default());
                }
            }
            let mut seen = Vec::new();
            definition.items.retain(|i| match i {
                TraitItem::Fn(f) if seen.contains(&f.sig.ident) => false,
                TraitItem::Fn(f) => {
                    seen.push(f.sig.ident.clone());
                    true
                }
                _ => true,
            });
            definition.into_token_stream()
        }
        Err(_) => item,
    };
    quote! {
        #item
        #errors
    }
}
