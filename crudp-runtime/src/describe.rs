//! What a module's actions take and give, as serde shapes: for `GET {mount}/modules` and for
//! API lock files. Traced with `serde-reflection` (feature `server`); without it, nothing is
//! traced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Module, ModuleDescriptor, protocol::Action};

#[cfg(feature = "server")]
mod lock;

#[cfg(feature = "server")]
pub use lock::{Break, LockCheck, LockError, check_lock};
#[cfg(feature = "server")]
pub use serde_reflection::{ContainerFormat, Format, Named, VariantFormat};

/// The shapes of some modules' actions, and of the named types they use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// The modules, by name.
    pub modules: BTreeMap<String, ModuleShape>,
    /// The structs and enums the actions use, by name.
    #[cfg(feature = "server")]
    pub types: BTreeMap<String, ContainerFormat>,
}

/// One module: its wire ID and its actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleShape {
    /// The wire ID.
    pub id: u32,
    /// The Rust path of the trait's module.
    pub path: String,
    /// The actions, by name (`create`, `read`, `update`, `delete`).
    pub actions: BTreeMap<String, ActionShape>,
}

/// One action: the shape of its argument tuple, of its `Ok` value and of its error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionShape {
    /// The argument tuple.
    #[cfg(feature = "server")]
    pub args: Format,
    /// The `Ok` value.
    #[cfg(feature = "server")]
    pub ok: Format,
    /// The handler's error.
    #[cfg(feature = "server")]
    pub err: Format,
}

/// Traces the types of one module's actions; the generated `Module::describe` fills it.
pub struct Shapes<'a> {
    module: &'a mut ModuleShape,
    #[cfg(feature = "server")]
    tracer: &'a mut serde_reflection::Tracer,
    #[cfg(feature = "server")]
    samples: &'a serde_reflection::Samples,
    #[cfg(feature = "server")]
    retraces: &'a mut Vec<Retrace>,
    problems: &'a mut Vec<String>,
    name: &'static str,
}

impl Shapes<'_> {
    /// Traces the types of `action`: its argument tuple `A`, its `Ok` type `T`, its error `E`.
    pub fn action<A, T, E>(&mut self, action: Action)
    where
        A: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
        E: Serialize + DeserializeOwned,
    {
        #[cfg(feature = "server")]
        {
            let mut trace = |what: &str, result: serde_reflection::Result<Format>| match result {
                Ok(format) => format,
                Err(e) => {
                    self.problems.push(format!(
                        "{}::{action}: its {what} do not trace: {e}",
                        self.name
                    ));
                    Format::Unit
                }
            };
            let args = trace(
                "arguments",
                self.tracer.trace_type::<A>(self.samples).map(|(f, _)| f),
            );
            let ok = trace(
                "value",
                self.tracer.trace_type::<T>(self.samples).map(|(f, _)| f),
            );
            let err = trace(
                "error",
                self.tracer.trace_type::<E>(self.samples).map(|(f, _)| f),
            );
            self.retraces
                .extend([retrace::<A> as Retrace, retrace::<T>, retrace::<E>]);
            self.module
                .actions
                .insert(action.as_str().to_owned(), ActionShape { args, ok, err });
        }
        #[cfg(not(feature = "server"))]
        {
            let _ = (&mut self.problems, self.name);
            self.module
                .actions
                .insert(action.as_str().to_owned(), ActionShape {});
        }
    }
}

/// Why a description could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the API cannot be described: {}", .0.join("; "))]
pub struct DescribeError(pub Vec<String>);

impl Description {
    /// A description of the modules `describe` is called with:
    /// `Description::of(|d| { d.module::<TodosClient>(); })`.
    pub fn of(describe: impl FnOnce(&mut Describer)) -> Result<Self, DescribeError> {
        let mut describer = Describer {
            description: Description::default(),
            #[cfg(feature = "server")]
            tracer: serde_reflection::Tracer::new(serde_reflection::TracerConfig::default()),
            #[cfg(feature = "server")]
            retraces: Vec::new(),
            problems: Vec::new(),
        };
        describe(&mut describer);
        describer.finish()
    }
}

/// Gathers modules into a [`Description`]; see [`Description::of`].
pub struct Describer {
    description: Description,
    #[cfg(feature = "server")]
    tracer: serde_reflection::Tracer,
    /// How to trace each type traced so far again; see [`complete`].
    #[cfg(feature = "server")]
    retraces: Vec<Retrace>,
    problems: Vec<String>,
}

impl Describer {
    /// Adds the module `M` (a generated `{Trait}Client` or `{Trait}Server`).
    pub fn module<M: Module>(&mut self) -> &mut Self {
        self.descriptor(&M::DESCRIPTOR, M::describe)
    }

    /// Adds the module of `descriptor`, whose actions `describe` traces.
    pub fn descriptor(
        &mut self,
        descriptor: &ModuleDescriptor,
        describe: impl FnOnce(&mut Shapes<'_>),
    ) -> &mut Self {
        let mut module = ModuleShape {
            id: descriptor.id,
            path: descriptor.path.to_owned(),
            actions: BTreeMap::new(),
        };
        #[cfg(feature = "server")]
        let samples = serde_reflection::Samples::new();
        let mut shapes = Shapes {
            module: &mut module,
            #[cfg(feature = "server")]
            tracer: &mut self.tracer,
            #[cfg(feature = "server")]
            samples: &samples,
            #[cfg(feature = "server")]
            retraces: &mut self.retraces,
            problems: &mut self.problems,
            name: descriptor.name,
        };
        describe(&mut shapes);
        let name = descriptor.name.to_owned();
        if let Some(other) = self.description.modules.get(&name) {
            // Modules are described by name: one would hide the other.
            self.problems.push(format!(
                "two modules are named `{name}` (in `{}` and `{}`): give one of the traits \
                 another name to describe them",
                other.path, module.path
            ));
        }
        self.description.modules.insert(name, module);
        self
    }

    fn finish(self) -> Result<Description, DescribeError> {
        #[cfg(feature = "server")]
        let (description, problems) = {
            let (mut description, mut problems) = (self.description, self.problems);
            match complete(self.tracer, &self.retraces) {
                Ok(types) => description.types = types,
                Err(e) => problems.push(format!("the named types do not trace: {e}")),
            }
            (description, problems)
        };
        #[cfg(not(feature = "server"))]
        let (description, problems) = (self.description, self.problems);
        if problems.is_empty() {
            Ok(description)
        } else {
            Err(DescribeError(problems))
        }
    }
}

/// Traces a type again, in a tracer that knows which enums to finish; see [`complete`].
#[cfg(feature = "server")]
type Retrace = fn(&mut serde_reflection::Tracer, &serde_reflection::Samples, &[String]);

/// How often one type is traced again at most, a variant of each unfinished enum each time.
#[cfg(feature = "server")]
const MOST_RETRACES: usize = 1024;

/// Traces `X` until none of `enums` is left with variants untraced.
#[cfg(feature = "server")]
fn retrace<X: DeserializeOwned>(
    tracer: &mut serde_reflection::Tracer,
    samples: &serde_reflection::Samples,
    enums: &[String],
) {
    for _ in 0..MOST_RETRACES {
        if tracer.trace_type::<X>(samples).is_err() {
            // Reported by the first pass.
            return;
        }
        let mut again = false;
        for name in enums {
            again |= tracer.check_incomplete_enum(name).is_some();
        }
        if !again {
            return;
        }
    }
}

/// The named types `tracer` found. Tracing a type finishes an enum only when it is the type
/// itself; an enum inside it (an argument of the tuple, a field, a variant of its own) keeps
/// the variants one pass met. Those enums, named by the first pass, are traced again in a new
/// tracer that finishes them, until none is left (or a few rounds found no end).
#[cfg(feature = "server")]
fn complete(
    mut tracer: serde_reflection::Tracer,
    retraces: &[Retrace],
) -> serde_reflection::Result<serde_reflection::Registry> {
    let mut enums: Vec<String> = Vec::new();
    for _ in 0..8 {
        match tracer.registry() {
            Err(serde_reflection::Error::MissingVariants(missing))
                if missing.iter().any(|name| !enums.contains(name)) =>
            {
                for name in missing {
                    if !enums.contains(&name) {
                        enums.push(name);
                    }
                }
                tracer = serde_reflection::Tracer::new(serde_reflection::TracerConfig::default());
                let samples = serde_reflection::Samples::new();
                for retrace in retraces {
                    retrace(&mut tracer, &samples, &enums);
                }
            }
            done => return done,
        }
    }
    tracer.registry()
}

/// What the generated `Module::describe` traces one action with: the action's types are
/// traced if they are serde types, and skipped otherwise (a compile error elsewhere names
/// them), so a type that cannot cross the wire is reported once. Not public API.
#[doc(hidden)]
pub struct Traced<A, T, E>(std::marker::PhantomData<Types<A, T, E>>);

/// The types of [`Traced`], without owning any.
type Types<A, T, E> = fn() -> (A, T, E);

impl<A, T, E> Traced<A, T, E> {
    #[doc(hidden)]
    pub const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<A, T, E> Default for Traced<A, T, E> {
    fn default() -> Self {
        Self::new()
    }
}

/// Traces serde types; see [`Traced`]. Not public API.
#[doc(hidden)]
pub trait TraceWire {
    #[doc(hidden)]
    fn trace(&self, shapes: &mut Shapes<'_>, action: Action);
}

impl<A, T, E> TraceWire for &Traced<A, T, E>
where
    A: Serialize + DeserializeOwned,
    T: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
{
    fn trace(&self, shapes: &mut Shapes<'_>, action: Action) {
        shapes.action::<A, T, E>(action);
    }
}

/// Skips types that are not serde types; see [`Traced`]. Not public API.
#[doc(hidden)]
pub trait TraceNothing {
    #[doc(hidden)]
    fn trace(&self, shapes: &mut Shapes<'_>, action: Action) {
        let _ = (shapes, action);
    }
}

impl<A, T, E> TraceNothing for Traced<A, T, E> {}
