//! A typed model of the annotated trait. It records what the user wrote without judging it;
//! `valid.rs` holds the rules.

use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, Pat, PathArguments, ReturnType, TraitItem,
    TraitItemFn, Type, TypePath,
};

use crate::attr::Args;

/// The four CRUD actions, as the macro knows them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Action {
    Create,
    Read,
    Update,
    Delete,
}

impl Action {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "create" => Action::Create,
            "read" => Action::Read,
            "update" => Action::Update,
            "delete" => Action::Delete,
            _ => return None,
        })
    }

    /// The variant of the runtime's `Action`.
    pub(crate) fn variant(self) -> Ident {
        let name = match self {
            Action::Create => "Create",
            Action::Read => "Read",
            Action::Update => "Update",
            Action::Delete => "Delete",
        };
        Ident::new(name, proc_macro2::Span::call_site())
    }
}

pub(crate) struct Module<'a> {
    pub original: &'a ItemTrait,
    pub args: Args,
    pub methods: Vec<Method<'a>>,
    /// Trait items that are not methods.
    pub others: Vec<&'a TraitItem>,
}

pub(crate) struct Method<'a> {
    pub original: &'a TraitItemFn,
    pub ident: &'a Ident,
    /// `None` when the name is not a CRUD action.
    pub action: Option<Action>,
    pub receiver: Receiver<'a>,
    /// The parameters after the receiver, the context among them.
    pub params: Vec<Param<'a>>,
    pub output: Output<'a>,
}

pub(crate) enum Receiver<'a> {
    /// `&self`.
    Shared,
    /// `&mut self`, `self`, `self: Box<Self>`, ...
    Other(&'a syn::Receiver),
    None,
}

pub(crate) struct Param<'a> {
    pub original: &'a syn::PatType,
    /// The parameter's name, if it is a plain identifier.
    pub name: Option<&'a Ident>,
    pub ty: &'a Type,
    /// Whether the type is `&Context` (in any spelling of its path).
    pub is_context: bool,
}

/// What the broadcasts of an action carry; see [`Method::payload`].
pub(crate) enum Payload<'a> {
    /// The `Ok` value, of this type.
    Value(&'a Type),
    /// The call's arguments (its result is `()`), as this type.
    Args(proc_macro2::TokenStream),
}

pub(crate) enum Output<'a> {
    /// `Result<T, E>`.
    Result { ok: &'a Type, err: &'a Type },
    /// Any other type.
    Other(&'a Type),
    /// No return type.
    Unit,
}

impl<'a> Module<'a> {
    pub(crate) fn from_syn(original: &'a ItemTrait, args: Args) -> Self {
        let mut methods = Vec::new();
        let mut others = Vec::new();
        for item in &original.items {
            match item {
                TraitItem::Fn(method) => methods.push(Method::from_syn(method)),
                other => others.push(other),
            }
        }
        Self {
            original,
            args,
            methods,
            others,
        }
    }

    /// The methods that name an action, with it.
    pub(crate) fn actions(&self) -> impl Iterator<Item = (Action, &Method<'a>)> + '_ {
        self.methods.iter().filter_map(|m| m.action.map(|a| (a, m)))
    }
}

impl<'a> Method<'a> {
    fn from_syn(original: &'a TraitItemFn) -> Self {
        let sig = &original.sig;
        let ident = &sig.ident;
        let mut receiver = Receiver::None;
        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => {
                    let shared = matches!(r.kind, syn::ReceiverKind::Reference(_, _, None))
                        && r.mutability.is_none();
                    receiver = if shared {
                        Receiver::Shared
                    } else {
                        Receiver::Other(r)
                    };
                }
                FnArg::Typed(pat) => params.push(Param {
                    original: pat,
                    name: match &*pat.pat {
                        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(&p.ident),
                        _ => None,
                    },
                    ty: &pat.ty,
                    is_context: is_context(&pat.ty),
                }),
            }
        }
        let output = match &sig.output {
            ReturnType::Default => Output::Unit,
            ReturnType::Type(_, ty) => match result_types(ty) {
                Some((ok, err)) => Output::Result { ok, err },
                None => Output::Other(ty),
            },
        };
        Self {
            original,
            ident,
            action: Action::from_name(&ident.unraw_string()),
            receiver,
            params,
            output,
        }
    }

    /// The parameters that travel on the wire: all but the context.
    pub(crate) fn wire_params(&self) -> impl Iterator<Item = &Param<'a>> + '_ {
        self.params.iter().filter(|p| !p.is_context)
    }

    /// What a broadcast of this action carries, and its listeners receive: the `Ok` type, or
    /// for an action that returns `()` (written so), its arguments: the one argument's type, or
    /// the tuple of them. `None` unless the method returns a `Result`.
    pub(crate) fn payload(&self) -> Option<Payload<'_>> {
        let Output::Result { ok, .. } = &self.output else {
            return None;
        };
        if !is_unit(ok) {
            return Some(Payload::Value(ok));
        }
        let types: Vec<&Type> = self.wire_params().map(|p| p.ty).collect();
        Some(match types.as_slice() {
            [one] => Payload::Args(quote::quote!(#one)),
            many => Payload::Args(quote::quote!((#(#many,)*))),
        })
    }
}

trait UnrawString {
    fn unraw_string(&self) -> String;
}

impl UnrawString for Ident {
    fn unraw_string(&self) -> String {
        let name = self.to_string();
        name.strip_prefix("r#").map(str::to_owned).unwrap_or(name)
    }
}

/// Whether `ty` is `Context` behind a reference: `&Context`, `&crudp::Context`, `&mut Context`...
fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => last_segment_is(&r.elem, "Context"),
        other => last_segment_is(other, "Context"),
    }
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(TypePath {
            qself: None, path, ..
        }) => path.segments.last().is_some_and(|s| s.ident == name),
        Type::Group(g) => last_segment_is(&g.elem, name),
        Type::Paren(p) => last_segment_is(&p.elem, name),
        _ => false,
    }
}

/// Whether `ty` is `()`.
fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Group(g) => is_unit(&g.elem),
        Type::Paren(p) => is_unit(&p.elem),
        _ => false,
    }
}

/// `T` and `E` of `Result<T, E>` (in any spelling of its path).
fn result_types(ty: &Type) -> Option<(&Type, &Type)> {
    if let Type::Group(group) = ty {
        return result_types(&group.elem);
    }
    let Type::Path(TypePath {
        qself: None, path, ..
    }) = ty
    else {
        return None;
    };
    let last = path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next(), types.next(), args.args.len()) {
        (Some(ok), Some(err), None, 2) => Some((ok, err)),
        _ => None,
    }
}
