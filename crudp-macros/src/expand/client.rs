//! `{Trait}Client`: the typed stub that queues calls on a `crudp::Client`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{Names, carried_attributes, docs};
use crate::ast::{Module, Output, Payload};

pub(crate) fn expand(module: &Module<'_>, names: &Names) -> TokenStream {
    let krate = &module.args.krate;
    let private = quote!(#krate::__private);
    let vis = &module.original.vis;
    let Names {
        module: name,
        client,
        ..
    } = names;
    let cfg = carried_attributes(module).collect::<Vec<_>>();
    let doc = format!(
        " Calls [`{name}`] on a CRUDP server. Each method queues its call at once, even offline; \
         calls made together leave in one batch."
    );

    let methods = module.actions().filter_map(|(action, method)| {
        let variant = action.variant();
        let ident = method.ident;
        let Output::Result { ok, err } = &method.output else {
            return None;
        };
        let params: Vec<_> = method
            .wire_params()
            .enumerate()
            .map(|(i, p)| {
                (
                    p.name
                        .cloned()
                        .unwrap_or_else(|| format_ident!("__crudp_arg{i}")),
                    p.ty,
                )
            })
            .collect();
        let names = params.iter().map(|(n, _)| n);
        let inputs = params.iter().map(|(n, ty)| quote!(#n: #ty));
        let bare = ident.to_string().trim_start_matches("r#").to_owned();
        let on_ident = quote::format_ident!("on_{bare}");
        let (heard, on_doc) = match method.payload()? {
            Payload::Value(ty) => (
                quote!(#ty),
                format!(
                    " Calls `listener` with every successful result of [`{name}::{bare}`]: \
                     this client's own calls and the broadcasts of others."
                ),
            ),
            Payload::Args(ty) => (
                ty,
                format!(
                    " Calls `listener` with the arguments of every successful call of \
                     [`{name}::{bare}`] (it returns nothing, so they tell what was done): \
                     this client's own calls and the broadcasts of others."
                ),
            ),
        };
        let summary = format!(" Calls [`{name}::{bare}`] on the server.");
        let user_docs: Vec<_> = docs(method).collect();
        let separator = (!user_docs.is_empty()).then(|| quote!(#[doc = ""]));
        Some(quote! {
            #[doc = #summary]
            #separator
            #(#user_docs)*
            pub fn #ident(&self, #(#inputs),*) -> #private::CallFuture<#ok, #err> {
                self.client.call(
                    <Self as #private::Module>::DESCRIPTOR.id,
                    #private::Action::#variant,
                    &(#(#names,)*),
                )
            }

            #[doc = #on_doc]
            pub fn #on_ident(
                &self,
                listener: impl ::core::ops::Fn(#heard) + #private::MaybeSendSync + 'static,
            ) -> #private::Listener {
                self.client.listen(
                    <Self as #private::Module>::DESCRIPTOR.id,
                    #private::Action::#variant,
                    listener,
                )
            }
        })
    });

    quote! {
        #(#cfg)*
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #client {
            client: #private::Client,
        }

        #(#cfg)*
        impl #client {
            /// A stub that sends its calls through `client`.
            pub fn new(client: &#private::Client) -> Self {
                Self { client: ::core::clone::Clone::clone(client) }
            }

            #(#methods)*
        }
    }
}
