//! What a handler knows about the call it serves.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::protocol::{ClientId, RequestId};

/// Who else receives a successful call's result, besides the calling client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every connection.
    All,
    /// The connections of every user with this role.
    Role(String),
    /// Every connection (every tab) of this user.
    User(String),
}

/// What a handler asked for while it ran; read by the server after the handler returns.
#[derive(Debug, Default)]
pub struct Effects {
    /// Where to publish the call's result if it succeeds.
    pub broadcast: Vec<Target>,
    /// Set when the handler asked to be run again later.
    pub retry_later: Option<String>,
}

/// A call that will run again later: what [`Context::retry_later`] returns. Its client never
/// sees it (the call is answered `Unavailable` and sent again); a handler's error type may
/// convert from it so that `?` and `.into()` work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryLater {
    /// Why the call could not run now.
    pub reason: String,
}

impl std::fmt::Display for RetryLater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "retry later: {}", self.reason)
    }
}

impl std::error::Error for RetryLater {}

/// For handlers whose error type is a `String`.
impl From<RetryLater> for String {
    fn from(retry: RetryLater) -> Self {
        retry.to_string()
    }
}

/// For handlers whose error type is `()`.
impl From<RetryLater> for () {
    fn from(_: RetryLater) -> Self {}
}

/// The ID (and role) of [`User::anonymous`].
pub(crate) const ANONYMOUS: &str = "anonymous";

/// The authenticated user a call is made for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// The user's ID, as the application's authenticator names it.
    pub id: String,
    /// The user's role, e.g. `admin`.
    pub role: String,
}

impl User {
    /// A user with this ID and role.
    pub fn new(id: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            role: role.into(),
        }
    }

    /// What an authenticator answers for a request that is not signed in: ID and role
    /// `anonymous`. The server makes each such request the user of its client key instead
    /// (see [`User::anonymous_key`]).
    pub fn anonymous() -> Self {
        Self::new(ANONYMOUS, ANONYMOUS)
    }

    /// The anonymous visitor whose client sends `key`: ID `anonymous:` and 32 hex digits of the
    /// key's SHA-256 digest, role `anonymous`. The key itself is never stored.
    #[cfg(feature = "server")]
    pub fn anonymous_key(key: &[u8]) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key);
        let mut id = String::with_capacity(ANONYMOUS.len() + 33);
        id.push_str(ANONYMOUS);
        id.push(':');
        push_hex(&mut id, &digest[..16]);
        Self::new(id, ANONYMOUS)
    }

    /// Whether this is an anonymous visitor: [`User::anonymous`] or the user of a client key.
    pub fn is_anonymous(&self) -> bool {
        self.id
            .strip_prefix(ANONYMOUS)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
    }
}

/// Appends `bytes` to `out` as lowercase hex digits.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

/// The context of one call, handed to every handler method.
///
/// It tells who is calling (the [`User`] from the application's authenticator), which call
/// this is ([`RequestId`]), and gives the raw HTTP request parts and their typed extensions
/// to handlers that need them.
#[derive(Debug)]
pub struct Context {
    request: Arc<RequestInfo>,
    seq: u64,
    /// The outcome store's lease the server runs the call under, if it runs it.
    lease: Option<u64>,
    /// Made on first use: most calls ask for nothing, and a batch makes a context per call.
    /// Clones share it.
    effects: OnceLock<Arc<Mutex<Effects>>>,
}

impl Clone for Context {
    fn clone(&self) -> Self {
        Self {
            request: Arc::clone(&self.request),
            seq: self.seq,
            lease: self.lease,
            effects: OnceLock::from(Arc::clone(self.shared_effects())),
        }
    }
}

#[derive(Debug)]
struct RequestInfo {
    user: User,
    client: ClientId,
    parts: http::request::Parts,
}

impl Context {
    /// A context for calls of `client` made by `user` inside the HTTP request `parts`.
    ///
    /// The server makes these; servers, tests and benchmarks that call a module in-process
    /// can make their own, then one per call with [`Context::for_seq`].
    pub fn new(user: User, client: ClientId, parts: http::request::Parts) -> Self {
        Self {
            request: Arc::new(RequestInfo {
                user,
                client,
                parts,
            }),
            seq: 0,
            lease: None,
            effects: OnceLock::new(),
        }
    }

    /// A context for an in-process call, with an empty HTTP request.
    pub fn local(user: User, client: ClientId) -> Self {
        Self::new(user, client, http::Request::new(()).into_parts().0)
    }

    /// The same request's context for the call with sequence number `seq`.
    pub fn for_seq(&self, seq: u64) -> Self {
        Self {
            request: Arc::clone(&self.request),
            seq,
            lease: None,
            effects: OnceLock::new(),
        }
    }

    /// [`for_seq`](Self::for_seq) for a call the server runs under the outcome store's
    /// `lease`.
    #[cfg(feature = "server")]
    pub(crate) fn for_run(&self, seq: u64, lease: crate::outcomes::Lease) -> Self {
        Self {
            lease: Some(lease.id()),
            ..self.for_seq(seq)
        }
    }

    /// The outcome store's lease the server runs the call under, if it runs it.
    #[cfg(feature = "server")]
    pub(crate) fn lease(&self) -> Option<u64> {
        self.lease
    }

    /// The user making the call.
    pub fn user(&self) -> &User {
        &self.request.user
    }

    /// The client that sent the call.
    pub fn client(&self) -> ClientId {
        self.request.client
    }

    /// The call's ID: its client and sequence number.
    pub fn request_id(&self) -> RequestId {
        RequestId {
            client: self.request.client,
            seq: self.seq,
        }
    }

    /// The raw parts (method, URI, headers, extensions) of the HTTP request that carried the call.
    pub fn parts(&self) -> &http::request::Parts {
        &self.request.parts
    }

    /// The headers of the HTTP request that carried the call.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.request.parts.headers
    }

    /// A typed value that a middleware layer put in the request's extensions.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.request.parts.extensions.get::<T>()
    }

    /// After this call succeeds, also publish its result to `target`, as an
    /// `event: broadcast` that the clients' `on_<action>` listeners receive. The calling
    /// client gets the result as its own and is left out of the broadcast.
    pub fn broadcast(&self, target: Target) {
        self.effects().broadcast.push(target);
    }

    /// Asks the server to treat this call as not executed: the client gets
    /// [`Outcome::Unavailable`](crate::Outcome::Unavailable) and sends it again later, and the
    /// rest of its batch waits. For transient failures (a database that is briefly
    /// unreachable); whatever the handler returns is discarded, so it must not have changed
    /// anything.
    ///
    /// Returns the reason as a [`RetryLater`], for handlers whose error type converts from it:
    /// `return Err(ctx.retry_later("the database is busy").into())`.
    pub fn retry_later(&self, reason: impl Into<String>) -> RetryLater {
        let reason = reason.into();
        self.effects().retry_later = Some(reason.clone());
        RetryLater { reason }
    }

    /// Opens a file that the call's arguments refer to, as a stream of its bytes, whether it
    /// came inside the batch ([`FileRef::inline`](crate::files::FileRef::inline)) or was
    /// uploaded. Only the user who uploaded a file may open it here
    /// ([`FileError::Forbidden`](crate::files::FileError::Forbidden)).
    ///
    /// If its upload has begun but not all of it arrived yet, the call is treated as not
    /// executed (as with [`retry_later`](Self::retry_later)): whatever the handler returns is
    /// discarded and the client sends the call again, so open files before changing anything.
    /// Of an ID that no upload has named, it fails with
    /// [`FileError::NotFound`](crate::files::FileError::NotFound).
    ///
    /// ```no_run
    /// # async fn doc(ctx: &crudp_runtime::Context, file: crudp_runtime::files::FileRef)
    /// # -> Result<usize, crudp_runtime::files::FileError> {
    /// let bytes = ctx.open(&file).await?.bytes().await?;
    /// # Ok(bytes.len())
    /// # }
    /// ```
    #[cfg(feature = "files")]
    pub async fn open(
        &self,
        file: &crate::files::FileRef,
    ) -> Result<crate::files::FileReader, crate::files::FileError> {
        use crate::files::{FileError, Files};
        if let Some(bytes) = crate::files::inline_checked(file) {
            return bytes.map(crate::files::FileReader::inline);
        }
        let files = self.extension::<Files>().ok_or(FileError::NotConfigured)?;
        match files.owner(file.id).await? {
            None => return Err(FileError::NotFound(file.id)),
            Some(owner) if *owner != *self.user().id => return Err(FileError::Forbidden(file.id)),
            Some(_) => {}
        }
        let opened = files.open(file).await;
        if let Err(FileError::Pending(id)) = &opened {
            self.retry_later(format!("waiting for the rest of upload {id}"));
        }
        opened
    }

    /// Takes what the handler asked for; the server calls this once the handler returns.
    pub fn take_effects(&self) -> Effects {
        match self.effects.get() {
            Some(effects) => std::mem::take(&mut *lock(effects)),
            None => Effects::default(),
        }
    }

    fn shared_effects(&self) -> &Arc<Mutex<Effects>> {
        self.effects.get_or_init(Arc::default)
    }

    fn effects(&self) -> MutexGuard<'_, Effects> {
        lock(self.shared_effects())
    }
}

fn lock(effects: &Mutex<Effects>) -> MutexGuard<'_, Effects> {
    effects.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_of_a_call_share_what_it_asks_for_and_the_next_call_starts_afresh() {
        let request = Context::local(User::new("ann", "user"), ClientId(7));
        let call = request.for_seq(3);
        assert!(call.take_effects().broadcast.is_empty());
        // A clone made before anything was asked for (moved into a task, say) still shares.
        let clone = call.clone();
        clone.broadcast(Target::All);
        let _ = clone.retry_later("busy");
        let effects = call.take_effects();
        assert_eq!(effects.broadcast.len(), 1);
        assert_eq!(effects.retry_later.as_deref(), Some("busy"));
        call.broadcast(Target::User("bob".into()));
        assert_eq!(clone.take_effects().broadcast.len(), 1);
        call.broadcast(Target::All);
        assert!(call.for_seq(4).take_effects().broadcast.is_empty());
        assert_eq!(call.take_effects().broadcast.len(), 1);
    }
}
