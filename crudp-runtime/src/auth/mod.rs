//! Who is calling: the application's [`Authenticator`], and the short-lived tokens that
//! authenticate event streams.

mod token;

pub use token::{Claims, TokenError, TokenKey};

use http::request::Parts;

use crate::{context::User, dispatch::BoxFuture};

/// Tells who makes a request, from its headers or cookies.
///
/// Any `Fn(&Parts) -> Result<User, AuthError>` is an authenticator; implement the trait for
/// authenticators that must await something (a session store, say).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a CRUDP authenticator",
    note = "use a closure `|parts: &http::request::Parts| -> Result<User, AuthError>` or implement `Authenticator`"
)]
pub trait Authenticator: Send + Sync + 'static {
    /// The user making the request, or why the request is refused with `401 Unauthorized`.
    fn authenticate<'a>(&'a self, parts: &'a Parts) -> BoxFuture<'a, Result<User, AuthError>>;
}

impl<F> Authenticator for F
where
    F: Fn(&Parts) -> Result<User, AuthError> + Send + Sync + 'static,
{
    fn authenticate<'a>(&'a self, parts: &'a Parts) -> BoxFuture<'a, Result<User, AuthError>> {
        let result = self(parts);
        Box::pin(async move { result })
    }
}

/// The default authenticator: everyone is [`User::anonymous`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl Authenticator for Anonymous {
    fn authenticate<'a>(&'a self, _: &'a Parts) -> BoxFuture<'a, Result<User, AuthError>> {
        Box::pin(async { Ok(User::anonymous()) })
    }
}

/// Why a request was not authenticated; it is answered with `401 Unauthorized` and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

impl AuthError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
