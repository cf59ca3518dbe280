//! `{Trait}Server<S>`: the dispatch glue between the wire and the application's implementation.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{Names, carried_attributes};
use crate::ast::{Module, Payload};

pub(crate) fn expand(module: &Module<'_>, names: &Names) -> TokenStream {
    let krate = &module.args.krate;
    let private = quote!(#krate::__private);
    let vis = &module.original.vis;
    let tr = &module.original.ident;
    let Names {
        module: name,
        server,
        ..
    } = names;
    let cfg = carried_attributes(module).collect::<Vec<_>>();
    let doc = format!(
        " Serves [`{name}`] on a CRUDP server: mount it with `Crudp::builder().handler({server}::new(implementation))`."
    );

    let arms = module.actions().map(|(action, method)| {
        let variant = action.variant();
        let ident = method.ident;
        let vars: Vec<_> = (0..method.wire_params().count()).map(|i| format_ident!("__crudp_arg{i}")).collect();
        let types = method.wire_params().map(|p| p.ty);
        quote! {
            #private::Action::#variant => #private::Box::pin(async move {
                match #private::decode_args::<(#(#types,)*)>(args, descriptor, #private::Action::#variant) {
                    ::core::result::Result::Ok((#(#vars,)*)) => {
                        #private::encode_result(<__CrudpS as #tr>::#ident(&self.inner, ctx, #(#vars),*).await)
                    }
                    ::core::result::Result::Err(rejection) => rejection,
                }
            }),
        }
    });
    let broadcasts = module.actions().filter_map(|(action, method)| {
        let variant = action.variant();
        let bare = method.ident.to_string().trim_start_matches("r#").to_owned();
        let ident = format_ident!("broadcast_{bare}");
        // The application's parameter names, and `api` and `target` unless it uses them.
        // Unraw: `r#api` binds `api` as well.
        let taken: Vec<String> = method
            .wire_params()
            .filter_map(|p| p.name.map(|n| n.to_string().trim_start_matches("r#").to_owned()))
            .collect();
        let fixed = |name: &str| if taken.iter().any(|t| t == name) { format_ident!("__crudp_{name}") } else { format_ident!("{name}") };
        let (api, target) = (fixed("api"), fixed("target"));
        let (inputs, payload, doc) = match method.payload()? {
            Payload::Value(ty) => (
                quote!(value: &#ty,),
                quote!(value),
                format!(
                    " Publishes `value` as a result of [`{name}::{bare}`] to `{target}`, from server code outside \
                     handlers: the clients' `on_{bare}` listeners receive it."
                ),
            ),
            Payload::Args(_) => {
                let names: Vec<_> = method
                    .wire_params()
                    .enumerate()
                    .map(|(i, p)| p.name.cloned().unwrap_or_else(|| format_ident!("__crudp_arg{i}")))
                    .collect();
                let types = method.wire_params().map(|p| p.ty);
                (
                    quote!(#(#names: &#types,)*),
                    quote!(&(#(#names,)*)),
                    format!(
                        " Publishes a call of [`{name}::{bare}`] with these arguments to `{target}`, from server code \
                         outside handlers: the clients' `on_{bare}` listeners receive the arguments (the action \
                         returns nothing)."
                    ),
                )
            }
        };
        Some(quote! {
            #[doc = #doc]
            pub async fn #ident<__CrudpB: #private::Broadcaster>(
                #api: &__CrudpB,
                #inputs
                #target: #private::Target,
            ) -> ::core::result::Result<(), <__CrudpB as #private::Broadcaster>::Error> {
                #private::Broadcaster::broadcast(
                    #api,
                    &<Self as #private::Module>::DESCRIPTOR,
                    #private::Action::#variant,
                    #payload,
                    #target,
                )
                .await
            }
        })
    });
    let fallback_arm = (module.actions().count() < 4).then(|| {
        quote! {
            action => #private::Box::pin(::core::future::ready(#private::unknown_action(descriptor, action))),
        }
    });

    quote! {
        #(#cfg)*
        #[doc = #doc]
        #[derive(Clone, Debug, Default)]
        #vis struct #server<S> {
            inner: S,
        }

        #(#cfg)*
        impl<S> #server<S> {
            /// Serves the module with `inner`, the application's implementation of it.
            pub fn new(inner: S) -> Self {
                Self { inner }
            }

            /// The application's implementation.
            pub fn inner(&self) -> &S {
                &self.inner
            }

            /// Gives the application's implementation back.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }

        #(#cfg)*
        impl #server<()> {
            #(#broadcasts)*
        }

        #(#cfg)*
        const _: () = {
            #[automatically_derived]
            impl<__CrudpS> #private::Dispatch for #server<__CrudpS>
            where
                __CrudpS: #tr + ::core::marker::Send + ::core::marker::Sync + 'static,
            {
                fn descriptor(&self) -> &'static #private::ModuleDescriptor {
                    &<Self as #private::Module>::DESCRIPTOR
                }

                fn describe(&self, shapes: &mut #private::Shapes<'_>) {
                    <Self as #private::Module>::describe(shapes);
                }

                fn dispatch<'__crudp>(
                    &'__crudp self,
                    ctx: &'__crudp #private::Context,
                    action: #private::Action,
                    args: &'__crudp [u8],
                ) -> #private::BoxFuture<'__crudp, #private::Outcome> {
                    let descriptor = &<Self as #private::Module>::DESCRIPTOR;
                    match action {
                        #(#arms)*
                        #fallback_arm
                    }
                }
            }
        };
    }
}
