//! Generation: the trait with `Send` futures, then the descriptor, the server and the client.

mod client;
mod descriptor;
mod server;

use proc_macro2::{Ident, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{Attribute, Item, ReturnType, TraitItem, spanned::Spanned};

use crate::{
    ast::{Method, Module},
    attr::Args,
};

/// Expands `#[crudp::module(args)] item`, or every problem found in them.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = Args::parse(args);
    let item: Item = syn::parse2(item)?;
    let Item::Trait(original) = &item else {
        let error = not_a_trait(&item);
        return Err(match args {
            Ok(_) => error,
            Err(mut all) => {
                all.combine(error);
                all
            }
        });
    };
    let (args, arg_errors) = match args {
        Ok(args) => (args, None),
        Err(e) => (Args::default(), Some(e)),
    };
    let module = Module::from_syn(original, args);
    match (arg_errors, module.validate()) {
        (None, Ok(())) => {}
        (Some(e), Ok(())) | (None, Err(e)) => return Err(e),
        (Some(mut all), Err(e)) => {
            all.combine(e);
            return Err(all);
        }
    }
    let names = Names::new(&original.ident);
    let definition = trait_definition(&module);
    let checks = wire_type_checks(&module);
    let descriptor = descriptor::expand(&module, &names);
    let server = server::expand(&module, &names);
    let client = client::expand(&module, &names);
    Ok(quote! {
        #definition
        #checks
        #descriptor
        #server
        #client
    })
}

/// The names of the generated items.
pub(crate) struct Names {
    /// The trait, without `r#`, as the descriptor and the docs show it.
    pub module: String,
    pub server: Ident,
    pub client: Ident,
}

impl Names {
    fn new(trait_ident: &Ident) -> Self {
        let module = trait_ident.to_string().trim_start_matches("r#").to_owned();
        Self {
            server: format_ident!("{}Server", module, span = trait_ident.span()),
            client: format_ident!("{}Client", module, span = trait_ident.span()),
            module,
        }
    }
}

/// The user's trait, each `async fn` turned into a `fn` returning a `Send` future.
fn trait_definition(module: &Module<'_>) -> TokenStream {
    let mut definition = module.original.clone();
    for item in &mut definition.items {
        let TraitItem::Fn(method) = item else {
            continue;
        };
        if method.sig.asyncness.take().is_none() {
            continue;
        }
        let output = match &method.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => ty.to_token_stream(),
        };
        let span = output.span();
        method.sig.output = syn::parse_quote_spanned! {span=>
            -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
        };
    }
    definition.into_token_stream()
}

/// The attributes of the trait that its generated items carry too: `#[cfg]`. (`#[cfg_attr]`
/// may add attributes meant for the trait alone, so it stays there.)
pub(crate) fn carried_attributes<'a>(
    module: &'a Module<'_>,
) -> impl Iterator<Item = &'a Attribute> {
    module
        .original
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
}

/// The doc attributes of a method.
pub(crate) fn docs<'a>(method: &'a Method<'_>) -> impl Iterator<Item = &'a Attribute> {
    method
        .original
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
}

/// Asserts at compile time that every type crossing the wire is a serde type and that each
/// context is `crudp::Context`, each check spanned on the user's type so the error points there.
pub(crate) fn wire_type_checks(module: &Module<'_>) -> TokenStream {
    let krate = &module.args.krate;
    let contexts = module.actions().filter_map(|(_, method)| {
        let param = method.params.iter().find(|p| p.is_context)?;
        let syn::Type::Reference(reference) = param.ty else {
            return None;
        };
        let ty = &reference.elem;
        Some(quote_spanned! {ty.span()=> #krate::__private::assert_context::<#ty>(); })
    });
    let checks = module.actions().flat_map(|(_, method)| {
        let params = method.wire_params().map(|p| p.ty);
        let outputs = match &method.output {
            crate::ast::Output::Result { ok, err } => vec![*ok, *err],
            _ => Vec::new(),
        };
        params.chain(outputs).map(|ty| {
            quote_spanned! {ty.span()=> #krate::__private::assert_wire_type::<#ty>(); }
        })
    });
    let cfg = carried_attributes(module);
    quote! {
        #(#cfg)*
        const _: () = {
            #[allow(dead_code)]
            fn __crudp_wire_types() {
                #(#contexts)*
                #(#checks)*
            }
        };
    }
}

fn not_a_trait(item: &Item) -> syn::Error {
    let (tokens, kind): (TokenStream, &str) = match item {
        Item::Struct(i) => (i.struct_token.to_token_stream(), "a struct"),
        Item::Enum(i) => (i.enum_token.to_token_stream(), "an enum"),
        Item::Union(i) => (i.union_token.to_token_stream(), "a union"),
        Item::Fn(i) => (i.sig.fn_token.to_token_stream(), "a function"),
        Item::Impl(i) => (i.impl_token.to_token_stream(), "an impl block"),
        Item::Mod(i) => (i.mod_token.to_token_stream(), "a module"),
        Item::Type(i) => (i.type_token.to_token_stream(), "a type alias"),
        other => (other.to_token_stream(), "this item"),
    };
    let hint = if matches!(item, Item::Impl(_)) {
        "; put it on the trait itself, not on its impl"
    } else {
        ": declare the module's methods in a trait, e.g. `trait Todos { async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<Todo, TodoError>; }`"
    };
    syn::Error::new_spanned(
        tokens,
        format!("`#[crudp::module]` goes on a trait, not on {kind}{hint}"),
    )
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::expand;

    fn error_count(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> usize {
        match expand(args, item) {
            Ok(_) => 0,
            Err(e) => e.into_iter().count(),
        }
    }

    #[test]
    fn a_valid_trait_expands_to_its_server_client_and_descriptor() {
        let tokens = expand(
            quote!(id = 7),
            quote! {
                pub trait Todos {
                    async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<String, ()>;
                }
            },
        )
        .unwrap()
        .to_string();
        for expected in [
            "pub struct TodosServer",
            "pub struct TodosClient",
            "id : 7u32",
            "Action :: Read",
        ] {
            assert!(
                tokens.contains(expected),
                "missing `{expected}` in {tokens}"
            );
        }
        assert!(
            !tokens.contains("async fn read"),
            "the trait's methods return `Send` futures"
        );
        assert!(
            tokens.contains("async fn broadcast_read"),
            "a typed broadcast is generated"
        );
    }

    #[test]
    fn every_problem_is_reported_in_one_pass() {
        let item = quote! {
            pub trait Todos {
                fn list(&mut self) -> bool;
            }
        };
        // not async, not CRUD, receiver, missing context, return type; plus the bad argument.
        assert_eq!(error_count(quote!(magic = 1), item), 6);
    }

    #[test]
    fn a_non_trait_item_is_refused() {
        assert_eq!(
            error_count(
                quote!(),
                quote!(
                    struct Todos;
                )
            ),
            1
        );
        assert_eq!(
            error_count(
                quote!(id = 1, id = 2),
                quote!(
                    struct Todos;
                )
            ),
            2
        );
    }
}
