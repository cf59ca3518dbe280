//! The attribute's own arguments: `#[crudp::module(id = 7, crate = "::crudp")]`.

use proc_macro2::TokenStream;
use syn::{Expr, ExprLit, Lit, LitInt, LitStr, Path, meta::ParseNestedMeta, parse::Parser};

/// The parsed arguments of `#[crudp::module(..)]`.
pub(crate) struct Args {
    /// `id = N`: the pinned wire ID.
    pub id: Option<u32>,
    /// `crate = "path"`: where the `crudp` crate is, for crates that rename it.
    pub krate: Path,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            id: None,
            krate: syn::parse_quote!(::crudp),
        }
    }
}

const EXPECTED: &str = "expected one of: `id`, `crate`";

impl Args {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut id: Option<u32> = None;
        let mut krate: Option<Path> = None;
        let mut errors: Vec<syn::Error> = Vec::new();
        let parser = syn::meta::parser(|meta| {
            let key = meta.path.get_ident().map(ToString::to_string);
            match key.as_deref() {
                Some("id") => match parse_id(&meta) {
                    Ok(_) if id.is_some() => errors
                        .push(meta.error("duplicate argument `id`: give the module one wire ID")),
                    Ok(value) => id = Some(value),
                    Err(e) => errors.push(e),
                },
                Some("crate") => {
                    let lit: LitStr = match meta.value()?.parse() {
                        Ok(lit) => lit,
                        Err(e) => {
                            errors.push(syn::Error::new(
                                e.span(),
                                "`crate` takes the path of the `crudp` crate as a string, e.g. `crate = \"::crudp\"`",
                            ));
                            meta.input.parse::<Expr>()?;
                            return Ok(());
                        }
                    };
                    match lit.parse::<Path>() {
                        Ok(path) if krate.is_none() => krate = Some(path),
                        Ok(_) => errors.push(meta.error("duplicate argument `crate`")),
                        Err(_) => errors.push(syn::Error::new(
                            lit.span(),
                            "`crate` takes the path of the `crudp` crate as a string, e.g. `crate = \"::crudp\"`",
                        )),
                    }
                }
                _ => {
                    let name = meta
                        .path
                        .segments
                        .iter()
                        .map(|s| s.ident.to_string())
                        .collect::<Vec<_>>()
                        .join("::");
                    errors.push(meta.error(format!("unknown argument `{name}`, {EXPECTED}")));
                    if meta.input.peek(syn::Token![=]) {
                        meta.value()?.parse::<Expr>()?;
                    }
                }
            }
            Ok(())
        });
        parser.parse2(tokens)?;
        match errors.into_iter().reduce(|mut all, e| {
            all.combine(e);
            all
        }) {
            Some(e) => Err(e),
            None => Ok(Self {
                id,
                krate: krate.unwrap_or_else(|| syn::parse_quote!(::crudp)),
            }),
        }
    }
}

fn parse_id(meta: &ParseNestedMeta<'_>) -> syn::Result<u32> {
    let value: Expr = meta.value()?.parse()?;
    match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => parse_u32(int),
        other => Err(syn::Error::new_spanned(
            other,
            "`id` takes an integer literal, e.g. `#[crudp::module(id = 7)]`",
        )),
    }
}

fn parse_u32(int: &LitInt) -> syn::Result<u32> {
    if !int.suffix().is_empty() && int.suffix() != "u32" {
        return Err(syn::Error::new(
            int.span(),
            "`id` is a `u32`: remove the suffix",
        ));
    }
    int.base10_parse::<u32>().map_err(|_| {
        syn::Error::new(
            int.span(),
            format!("`id` must fit in a `u32` (0 to {})", u32::MAX),
        )
    })
}
