//! API lock files: a [`Description`] committed beside an API crate, and the check that fails
//! when a change would break the clients already deployed against it.

use std::{collections::BTreeSet, fmt, path::Path};

use super::{ActionShape, ContainerFormat, Description, Format, Named, VariantFormat};

/// A change that breaks clients built against the locked API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// Where: `Todos`, `Todos::update`, `Todos::update (arguments)`.
    pub at: String,
    /// What changed.
    pub what: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

/// What [`check_lock`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockCheck {
    /// There was no lock file: it is written now; commit it.
    Written,
    /// The API is the locked one.
    Unchanged,
    /// The API only grew (modules, actions or enum variants added): deployed clients keep
    /// working. The lock file is rewritten to hold the additions; commit it.
    Grew,
}

/// Why [`check_lock`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Changes that would break deployed clients.
    #[error(
        "{} change(s) to the API would break the clients already deployed against {path}:\n{}\n\
         If they are meant, deploy new clients first, then write the lock again with \
         `CRUDP_API_LOCK=update`.",
        .breaks.len(),
        .breaks.iter().map(|b| format!("  - {b}")).collect::<Vec<_>>().join("\n")
    )]
    Breaks {
        /// The lock file.
        path: String,
        /// Each break.
        breaks: Vec<Break>,
    },
    /// The lock file could not be read, parsed or written.
    #[error("the API lock file {path}: {message}")]
    File {
        /// The lock file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Checks `current` against the lock file at `path`: writes it when there is none (or when
/// the environment variable `CRUDP_API_LOCK` is `update`), accepts additions (and records
/// them), and fails naming every change that would break a deployed client: a module removed
/// or its wire ID changed, an action removed, an argument, value or error shape changed
/// incompatibly. Call it from a test of the API crate's server, so the test command runs it.
///
/// # Errors
///
/// [`LockError::Breaks`] with every break; [`LockError::File`] if the file cannot be used.
pub fn check_lock(path: impl AsRef<Path>, current: &Description) -> Result<LockCheck, LockError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let file = |message: String| LockError::File {
        path: shown.clone(),
        message,
    };
    let write = || -> Result<(), LockError> {
        let mut json = serde_json::to_string_pretty(current).map_err(|e| file(e.to_string()))?;
        json.push('\n');
        std::fs::write(path, json).map_err(|e| file(format!("cannot write it: {e}")))
    };
    let update = std::env::var("CRUDP_API_LOCK").is_ok_and(|v| v == "update");
    let locked = match std::fs::read_to_string(path) {
        Ok(text) if !update => text,
        Ok(_) => {
            write()?;
            return Ok(LockCheck::Written);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write()?;
            return Ok(LockCheck::Written);
        }
        Err(e) => return Err(file(format!("cannot read it: {e}"))),
    };
    let deployed: Description =
        serde_json::from_str(&locked).map_err(|e| file(format!("it does not parse: {e}")))?;
    let breaks = current.breaks(&deployed);
    if !breaks.is_empty() {
        return Err(LockError::Breaks {
            path: shown,
            breaks,
        });
    }
    if *current == deployed {
        return Ok(LockCheck::Unchanged);
    }
    write()?;
    Ok(LockCheck::Grew)
}

impl Description {
    /// The changes from `deployed` (what clients were built against) to this description that
    /// would break those clients. Additions are not breaks: modules, actions and enum variants
    /// appended. Names of types and fields may change (postcard does not send them); their
    /// shapes may not.
    pub fn breaks(&self, deployed: &Description) -> Vec<Break> {
        let mut breaks = Vec::new();
        for (name, old) in &deployed.modules {
            let Some(new) = self.modules.get(name) else {
                breaks.push(Break {
                    at: name.clone(),
                    what: "the module was removed".into(),
                });
                continue;
            };
            if new.id != old.id {
                breaks.push(Break {
                    at: name.clone(),
                    what: format!(
                        "the wire ID changed from {} to {}: pin the old one with \
                         `#[crudp::module(id = {})]`",
                        old.id, new.id, old.id
                    ),
                });
            }
            for (action, was) in &old.actions {
                let at = format!("{name}::{action}");
                let Some(now) = new.actions.get(action) else {
                    breaks.push(Break {
                        at,
                        what: "the action was removed".into(),
                    });
                    continue;
                };
                self.compare_action(deployed, &at, was, now, &mut breaks);
            }
        }
        breaks
    }

    fn compare_action(
        &self,
        deployed: &Description,
        at: &str,
        was: &ActionShape,
        now: &ActionShape,
        breaks: &mut Vec<Break>,
    ) {
        for (part, old, new) in [
            ("arguments", &was.args, &now.args),
            ("value", &was.ok, &now.ok),
            ("error", &was.err, &now.err),
        ] {
            let mut compare = Compare {
                old: deployed,
                new: self,
                seen: BTreeSet::new(),
            };
            if let Err(what) = compare.format(old, new) {
                breaks.push(Break {
                    at: format!("{at} ({part})"),
                    what,
                });
            }
        }
    }
}

/// A structural comparison of two formats, each in its own description's named types.
struct Compare<'a> {
    old: &'a Description,
    new: &'a Description,
    /// Pairs of named types compared already (types may be recursive).
    seen: BTreeSet<(String, String)>,
}

impl Compare<'_> {
    fn format(&mut self, old: &Format, new: &Format) -> Result<(), String> {
        match (old, new) {
            (Format::TypeName(a), Format::TypeName(b)) => self.named(a, b),
            (Format::Option(a), Format::Option(b)) | (Format::Seq(a), Format::Seq(b)) => {
                self.format(a, b)
            }
            (Format::Map { key: k1, value: v1 }, Format::Map { key: k2, value: v2 }) => {
                self.format(k1, k2)?;
                self.format(v1, v2)
            }
            (Format::Tuple(a), Format::Tuple(b)) => self.all(a, b, "tuple"),
            (
                Format::TupleArray {
                    content: a,
                    size: n,
                },
                Format::TupleArray {
                    content: b,
                    size: m,
                },
            ) if n == m => self.format(a, b),
            (a, b) if a == b => Ok(()),
            (a, b) => Err(format!("was {}, is {}", show(a), show(b))),
        }
    }

    fn all(&mut self, old: &[Format], new: &[Format], what: &str) -> Result<(), String> {
        if old.len() != new.len() {
            return Err(format!(
                "the {what} had {} fields, has {}",
                old.len(),
                new.len()
            ));
        }
        for (i, (a, b)) in old.iter().zip(new).enumerate() {
            self.format(a, b)
                .map_err(|e| format!("field {} of the {what}: {e}", i + 1))?;
        }
        Ok(())
    }

    fn named(&mut self, old: &str, new: &str) -> Result<(), String> {
        if !self.seen.insert((old.to_owned(), new.to_owned())) {
            return Ok(());
        }
        let (Some(a), Some(b)) = (self.old.types.get(old), self.new.types.get(new)) else {
            return Err(format!("the type `{old}` is not described"));
        };
        let within = |e: String| format!("in `{new}`: {e}");
        match (a, b) {
            (ContainerFormat::UnitStruct, ContainerFormat::UnitStruct) => Ok(()),
            (ContainerFormat::NewTypeStruct(a), ContainerFormat::NewTypeStruct(b)) => {
                self.format(a, b).map_err(within)
            }
            (ContainerFormat::TupleStruct(a), ContainerFormat::TupleStruct(b)) => {
                self.all(a, b, "tuple struct").map_err(within)
            }
            (ContainerFormat::Struct(a), ContainerFormat::Struct(b)) => {
                self.fields(a, b).map_err(within)
            }
            (ContainerFormat::Enum(a), ContainerFormat::Enum(b)) => {
                for (index, was) in a {
                    let Some(now) = b.get(index) else {
                        return Err(within(format!("the variant `{}` was removed", was.name)));
                    };
                    // A variant is sent as its place: a name found at another place is a
                    // variant moved (another inserted before it, say), not one renamed.
                    if now.name != was.name
                        && let Some((place, _)) = b.iter().find(|(_, v)| v.name == was.name)
                    {
                        return Err(within(format!(
                            "the variant `{}` moved from place {index} to {place}: variants \
                             are sent by place, so add new ones at the end",
                            was.name
                        )));
                    }
                    self.variant(&was.value, &now.value)
                        .map_err(|e| within(format!("variant `{}`: {e}", was.name)))?;
                }
                Ok(())
            }
            _ => Err(format!(
                "`{old}` changed kind (struct, tuple struct or enum)"
            )),
        }
    }

    fn fields(&mut self, old: &[Named<Format>], new: &[Named<Format>]) -> Result<(), String> {
        if old.len() != new.len() {
            let names = |f: &[Named<Format>]| {
                f.iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "the fields were ({}), are ({}): postcard has no optional fields",
                names(old),
                names(new)
            ));
        }
        for (a, b) in old.iter().zip(new) {
            self.format(&a.value, &b.value)
                .map_err(|e| format!("field `{}`: {e}", a.name))?;
        }
        Ok(())
    }

    fn variant(&mut self, old: &VariantFormat, new: &VariantFormat) -> Result<(), String> {
        match (old, new) {
            (VariantFormat::Unit, VariantFormat::Unit) => Ok(()),
            (VariantFormat::NewType(a), VariantFormat::NewType(b)) => self.format(a, b),
            (VariantFormat::Tuple(a), VariantFormat::Tuple(b)) => self.all(a, b, "variant"),
            (VariantFormat::Struct(a), VariantFormat::Struct(b)) => self.fields(a, b),
            _ => Err("its kind changed".into()),
        }
    }
}

/// A format, briefly: `u64`, `String`, `Todo`, `Option<..>`.
fn show(format: &Format) -> String {
    match format {
        Format::TypeName(name) => format!("`{name}`"),
        Format::Option(_) => "an option".into(),
        Format::Seq(_) => "a sequence".into(),
        Format::Map { .. } => "a map".into(),
        Format::Tuple(items) => format!("a tuple of {}", items.len()),
        Format::TupleArray { size, .. } => format!("an array of {size}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
