//! The headers every request of a client carries: its key, and the application's own (an
//! `Authorization` header, say), which [`Client::set_header`](crate::Client::set_header) can
//! change while the client runs.

use std::sync::{Arc, Mutex, PoisonError};

use crudp_runtime::protocol::CLIENT_KEY_HEADER;

/// A header the client will not send: its name or value is not valid HTTP, or the client sets
/// it itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header `{name}` cannot be sent: {reason}")]
pub struct InvalidHeader {
    /// The header's name, as given.
    pub name: String,
    /// Why it cannot be sent.
    pub reason: &'static str,
}

/// Headers that the client or the HTTP stack set, which the application may not.
const RESERVED: &[&str] = &[
    CLIENT_KEY_HEADER,
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    // The event stream's own.
    "accept",
    "last-event-id",
];

/// `name` in lower case and `value`, if both can be sent.
pub(crate) fn checked(name: &str, value: &str) -> Result<(String, String), InvalidHeader> {
    let invalid = |reason| InvalidHeader {
        name: name.to_owned(),
        reason,
    };
    // RFC 9110's `token`.
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(invalid(
            "a name is letters, digits and `!#$%&'*+-.^_`|~` only",
        ));
    }
    let name = name.to_ascii_lowercase();
    if RESERVED.contains(&name.as_str()) {
        return Err(invalid("the client sets it itself"));
    }
    if !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
        return Err(invalid(
            "a value is visible ASCII, spaces and tabs only (no line breaks)",
        ));
    }
    Ok((name, value.trim().to_owned()))
}

/// The application's headers, by lower-case name: shared by the requests made since they last
/// changed, so a request copies none of them, and by the clients that send a page's adopted
/// queues, so a header the page sets later reaches them too.
pub(crate) type Own = Arc<Mutex<Arc<[(String, String)]>>>;

pub(crate) struct Headers {
    /// The client key (see [`CLIENT_KEY_HEADER`]).
    key: String,
    own: Own,
}

impl Headers {
    pub(crate) fn new(key: String, own: Vec<(String, String)>) -> Self {
        Self::sharing(key, Arc::new(Mutex::new(own.into())))
    }

    /// Headers with the application's `own`, as another client has them now and later.
    pub(crate) fn sharing(key: String, own: Own) -> Self {
        Self { key, own }
    }

    /// The application's headers, to share (see [`sharing`](Self::sharing)).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn shared(&self) -> Own {
        Arc::clone(&self.own)
    }

    // The tabs of a browser group their shared stream by it.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Sets a checked header (see [`checked`]) for the requests from now on, or removes it.
    pub(crate) fn set(&self, name: String, value: Option<String>) {
        let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changed: Vec<_> = own.iter().filter(|(n, _)| *n != name).cloned().collect();
        changed.extend(value.map(|value| (name, value)));
        *own = changed.into();
    }

    /// The application's headers now.
    pub(crate) fn own(&self) -> Arc<[(String, String)]> {
        Arc::clone(&self.own.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The headers of a request made now.
    pub(crate) fn now(&self) -> RequestHeaders<'_> {
        RequestHeaders {
            key: &self.key,
            own: self.own(),
        }
    }
}

/// The headers of one request, for [`Transport`](crate::Transport) methods.
pub(crate) struct RequestHeaders<'a> {
    key: &'a str,
    own: Arc<[(String, String)]>,
}

impl RequestHeaders<'_> {
    /// The application's headers alone.
    pub(crate) fn own(&self) -> Vec<(&str, &str)> {
        self.own
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    pub(crate) fn pairs(&self) -> Vec<(&str, &str)> {
        std::iter::once((CLIENT_KEY_HEADER, self.key))
            .chain(self.own.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Headers, checked};

    #[test]
    fn a_client_sharing_a_pages_headers_sends_what_the_page_sets_later() {
        let page = Headers::new(
            "key".into(),
            vec![("authorization".into(), "Bearer 1".into())],
        );
        let adopting = Headers::sharing("key".into(), page.shared());
        page.set("authorization".into(), Some("Bearer 2".into()));
        assert_eq!(
            adopting.now().pairs(),
            [("x-crudp-key", "key"), ("authorization", "Bearer 2")]
        );
    }

    #[test]
    fn names_are_tokens_and_values_single_lines() {
        assert_eq!(
            checked("Authorization", "Bearer abc"),
            Ok(("authorization".into(), "Bearer abc".into()))
        );
        assert!(checked("", "x").is_err());
        assert!(checked("x y", "x").is_err());
        assert!(checked("x-a", "one\r\nx-b: two").is_err());
        assert!(checked("x-a", "caf\u{e9}").is_err());
        let reserved = checked("X-Crudp-Key", "mine").unwrap_err();
        assert_eq!(reserved.reason, "the client sets it itself");
        assert!(reserved.to_string().contains("X-Crudp-Key"), "{reserved}");
        // A stream that resumed from the application's position would skip or repeat events.
        assert!(checked("Last-Event-ID", "5").is_err());
        assert!(checked("Accept", "text/html").is_err());
    }
}
