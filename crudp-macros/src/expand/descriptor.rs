//! The module descriptor: the wire ID and the actions, shared by the server and the client.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Names, carried_attributes};
use crate::ast::Module;

pub(crate) fn expand(module: &Module<'_>, names: &Names) -> TokenStream {
    let krate = &module.args.krate;
    let private = quote!(#krate::__private);
    let Names {
        module: name,
        server,
        client,
    } = names;
    let id = match module.args.id {
        Some(id) => quote!(#id),
        None => quote!(#private::module_id(#name)),
    };
    let mut actions: Vec<_> = module.actions().map(|(action, _)| action).collect();
    actions.sort();
    let variants = actions.iter().map(|a| a.variant());
    let cfg = carried_attributes(module).collect::<Vec<_>>();
    let traced = module.actions().filter_map(|(action, method)| {
        let crate::ast::Output::Result { ok, err } = &method.output else {
            return None;
        };
        let variant = action.variant();
        let types = method.wire_params().map(|p| p.ty);
        Some(quote! {
            (&&#private::Traced::<(#(#types,)*), #ok, #err>::new())
                .trace(shapes, #private::Action::#variant);
        })
    });
    quote! {
        #(#cfg)*
        const _: () = {
            #[automatically_derived]
            impl #private::Module for #client {
                const DESCRIPTOR: #private::ModuleDescriptor = #private::ModuleDescriptor {
                    id: #id,
                    name: #name,
                    path: ::core::module_path!(),
                    actions: &[#(#private::Action::#variants),*],
                };

                fn describe(shapes: &mut #private::Shapes<'_>) {
                    #[allow(unused_imports)]
                    use #private::{TraceNothing as _, TraceWire as _};
                    #(#traced)*
                }
            }

            #[automatically_derived]
            impl<S> #private::Module for #server<S> {
                const DESCRIPTOR: #private::ModuleDescriptor =
                    <#client as #private::Module>::DESCRIPTOR;

                fn describe(shapes: &mut #private::Shapes<'_>) {
                    <#client as #private::Module>::describe(shapes);
                }
            }
        };
    }
}
