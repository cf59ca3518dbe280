//! Every rule a CRUDP trait must follow. All problems are reported in one pass, each on the
//! code it is about, with the fix.

use quote::ToTokens;
use syn::{Error, Type, spanned::Spanned};

use crate::ast::{Action, Method, Module, Output, Param, Receiver};

const ACTIONS: &str = "`create`, `read`, `update` or `delete`";

#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, span: impl Spanned, message: impl std::fmt::Display) {
        self.push_error(Error::new(span.span(), message));
    }

    fn push_tokens(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push_error(Error::new_spanned(tokens, message));
    }

    fn push_error(&mut self, error: Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

impl Module<'_> {
    pub(crate) fn validate(&self) -> syn::Result<()> {
        let mut errors = Errors::default();
        let tr = self.original;
        let name = &tr.ident;
        if let Some(unsafety) = &tr.unsafety {
            errors.push(
                unsafety,
                "a CRUDP module cannot be an `unsafe trait`; remove `unsafe`",
            );
        }
        if let Some(auto) = &tr.modifiers.auto_token {
            errors.push(
                auto,
                "a CRUDP module cannot be an `auto trait`; remove `auto`",
            );
        }
        if !tr.generics.params.is_empty() || tr.generics.where_clause.is_some() {
            errors.push_tokens(
                &tr.generics,
                "a CRUDP module cannot be generic: both sides must agree on concrete types; remove the generic parameters",
            );
        }
        if let Some(colon) = &tr.colon_token {
            let supertraits = &tr.supertraits;
            errors.push_tokens(
                quote::quote!(#colon #supertraits),
                "a CRUDP module cannot have supertraits; remove them (the server adds `Send + Sync + 'static` itself)",
            );
        }
        for item in &self.others {
            errors.push_tokens(
                item,
                "a CRUDP module holds only its CRUD methods; remove this item or move it to another trait",
            );
        }
        if self.methods.is_empty() {
            errors.push(
                name,
                format!(
                    "`{name}` has no methods: a CRUDP module declares at least one of {ACTIONS}"
                ),
            );
        }
        for attr in tr
            .attrs
            .iter()
            .chain(self.methods.iter().flat_map(|m| &m.original.attrs))
        {
            if attr.path().is_ident("crudp")
                || attr.path().segments.iter().any(|s| s.ident == "module")
            {
                errors.push_tokens(
                    attr,
                    "`#[crudp::module]` is applied once, to the trait; remove this attribute",
                );
            }
        }
        let mut seen: Vec<(Action, &Method<'_>)> = Vec::new();
        for method in &self.methods {
            method.validate(name, &mut errors);
            if let Some(action) = method.action {
                if seen.iter().any(|(a, _)| *a == action) {
                    errors.push(
                        method.ident,
                        format!("`{}` is declared twice: a module has one method per action; remove one", method.ident),
                    );
                } else {
                    seen.push((action, method));
                }
            }
        }
        errors.finish()
    }
}

impl Method<'_> {
    fn validate(&self, trait_name: &syn::Ident, errors: &mut Errors) {
        let sig = &self.original.sig;
        let name = self.ident;
        if self.action.is_none() {
            errors.push(
                name,
                format!("`{name}` is not a CRUD action: a CRUDP method is named {ACTIONS}; rename it or move it to another trait"),
            );
        }
        for attr in &self.original.attrs {
            if attr.path().is_ident("cfg") {
                errors.push_tokens(
                    attr,
                    "`#[cfg]` cannot remove a single CRUDP method: the server and its clients must agree on the actions; put it on the trait instead",
                );
            }
        }
        if sig.asyncness.is_none() {
            errors.push(
                sig.fn_token,
                "CRUDP methods must be `async fn`; add `async`",
            );
        }
        if let Some(constness) = &sig.constness {
            errors.push(constness, "CRUDP methods cannot be `const`; remove `const`");
        }
        if let syn::Safety::Unsafe(unsafety) = &sig.safety {
            errors.push(
                unsafety,
                "CRUDP methods cannot be `unsafe`; remove `unsafe`",
            );
        }
        if let Some(abi) = &sig.abi {
            errors.push_tokens(abi, "CRUDP methods use the Rust ABI; remove the `extern`");
        }
        if let Some(variadic) = &sig.variadic {
            errors.push_tokens(variadic, "CRUDP methods cannot be variadic");
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errors.push_tokens(
                &sig.generics,
                "CRUDP methods cannot be generic: the wire needs concrete types; remove the generic parameters",
            );
        }
        if let Some(body) = &self.original.default {
            errors.push(
                body.brace_token.span.join(),
                format!("remove the method body: a CRUDP trait only declares `{name}`; implement it in `impl {trait_name} for YourType`"),
            );
        }
        match &self.receiver {
            Receiver::Shared => {}
            Receiver::Other(r) => {
                let written = match (&r.kind, &r.mutability) {
                    (syn::ReceiverKind::Reference(_, _, Some(_)), _) => "`&mut self`",
                    (syn::ReceiverKind::Value, Some(_)) => "`mut self`",
                    (syn::ReceiverKind::Value, None) => "`self`",
                    _ => "this receiver",
                };
                errors.push_tokens(
                    r,
                    format!("CRUDP methods take `&self`; replace {written} with `&self`"),
                );
            }
            Receiver::None => errors.push(
                sig.paren_token.span.join(),
                "CRUDP methods take `&self` first; add `&self` before the other parameters",
            ),
        }
        self.validate_params(errors);
        self.validate_output(errors);
    }

    fn validate_params(&self, errors: &mut Errors) {
        let sig = &self.original.sig;
        let mut contexts = self.params.iter().enumerate().filter(|(_, p)| p.is_context);
        match contexts.next() {
            None => errors.push(
                sig.paren_token.span.join(),
                "the first parameter after `&self` must be the call's context; add `ctx: &crudp::Context`",
            ),
            Some((index, param)) => {
                if index != 0 {
                    errors.push_tokens(
                        param.original,
                        "the context must be the first parameter after `&self`; move it there",
                    );
                }
                check_context_reference(param, errors);
            }
        }
        for (_, extra) in contexts {
            errors.push_tokens(
                extra.original,
                "a CRUDP method takes one context; remove this parameter",
            );
        }
        for param in self.wire_params() {
            check_wire_type(param.ty, "arguments", errors);
        }
        if let Some(extra) = self.wire_params().nth(MAX_ARGUMENTS) {
            errors.push_tokens(
                extra.original,
                format!(
                    "a method takes at most {MAX_ARGUMENTS} arguments besides the context (they \
                     cross the wire as one tuple, and serde's tuples end at {MAX_ARGUMENTS}); \
                     group some of them in a struct"
                ),
            );
        }
    }

    fn validate_output(&self, errors: &mut Errors) {
        let sig = &self.original.sig;
        let fix = "CRUDP methods return `Result<T, E>` with serde types `T` and `E`";
        match &self.output {
            Output::Result { ok, err } => {
                check_wire_type(ok, "results", errors);
                check_wire_type(err, "errors", errors);
            }
            Output::Other(ty) => {
                errors.push_tokens(ty, format!("{fix}; write this as `Result<T, E>`"))
            }
            Output::Unit => errors.push(
                sig.paren_token.span.close(),
                format!("{fix}; add a return type, e.g. `-> Result<(), MyError>`"),
            ),
        }
    }
}

/// The most arguments a method takes besides the context: serde implements tuples of up to 16.
const MAX_ARGUMENTS: usize = 16;

fn check_context_reference(param: &Param<'_>, errors: &mut Errors) {
    match param.ty {
        Type::Reference(r)
            if r.mutability.is_none() && r.lifetime.as_ref().is_none_or(|l| l.ident == "_") => {}
        Type::Reference(r) if r.mutability.is_some() => errors.push_tokens(
            param.ty,
            "the context is shared; take it as `&crudp::Context`, not `&mut`",
        ),
        Type::Reference(_) => errors.push_tokens(
            param.ty,
            "write the context without a lifetime: `&crudp::Context`",
        ),
        _ => errors.push_tokens(param.ty, "take the context by reference: `&crudp::Context`"),
    }
}

fn check_wire_type(ty: &Type, what: &str, errors: &mut Errors) {
    match ty {
        Type::Reference(r) => {
            let owned = match &*r.elem {
                Type::Path(p) if p.path.is_ident("str") => "`String`".to_owned(),
                Type::Slice(s) => format!("`Vec<{}>`", s.elem.to_token_stream()),
                _ => "an owned type".to_owned(),
            };
            errors.push_tokens(ty, format!("{what} cross the wire, so they are owned values; use {owned} instead of a reference"));
        }
        Type::ImplTrait(_) => errors.push_tokens(
            ty,
            format!("{what} cross the wire, so they have concrete serde types; replace `impl Trait` with a type"),
        ),
        Type::Infer(_) | Type::Never(_) => {
            errors.push_tokens(ty, format!("{what} need a concrete serde type here"))
        }
        _ => {}
    }
}
