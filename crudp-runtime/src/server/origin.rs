//! Requests from other sites. The `POST` endpoints take `application/octet-stream` only, a
//! type a browser sends to another origin only after a CORS preflight, and a browser request
//! must come from this server's own origin or an allowed one: its `Origin` says where it
//! comes from, or, without one, its `Sec-Fetch-Site`. Requests with neither come from outside
//! a browser (native clients, scripts) and cannot carry a visitor's cookies by surprise. A
//! `PUT` (an upload's bytes) may carry any content type: a browser sends none to another
//! origin without a preflight.

use std::{fmt, sync::Arc};

use axum::http::{StatusCode, header, request::Parts};

/// The origins besides the server's own whose pages may call the `POST` endpoints, given to
/// [`CrudpBuilder::allowed_origins`](super::CrudpBuilder::allowed_origins). The default
/// allows none: only pages the server itself serves.
///
/// ```
/// use crudp_runtime::server::{AllowedOrigins, Crudp};
///
/// let api = Crudp::builder()
///     .allowed_origins(AllowedOrigins::list(["https://app.example.com"]))
///     .build();
/// ```
#[derive(Clone, Default)]
pub struct AllowedOrigins(Allowed);

#[derive(Clone, Default)]
enum Allowed {
    #[default]
    None,
    List(Vec<String>),
    Matching(Arc<dyn Fn(&str) -> bool + Send + Sync>),
    Any,
}

impl AllowedOrigins {
    /// No other origin: the default.
    pub fn none() -> Self {
        Self(Allowed::None)
    }

    /// These origins, each written as a browser sends it: `scheme://host[:port]`, with no
    /// trailing slash (`https://app.example.com`, `http://127.0.0.1:8080`).
    pub fn list(origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(Allowed::List(origins.into_iter().map(Into::into).collect()))
    }

    /// The origins for which `allows` is true.
    pub fn matching(allows: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(Allowed::Matching(Arc::new(allows)))
    }

    /// Every origin. Only for servers that authenticate with something a browser does not
    /// attach by itself (an `Authorization` header, not a cookie): with cookies, any site
    /// could make its visitors' browsers call the API as them.
    pub fn any() -> Self {
        Self(Allowed::Any)
    }

    fn allows(&self, origin: &str) -> bool {
        match &self.0 {
            Allowed::None => false,
            Allowed::List(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            Allowed::Matching(allows) => allows(origin),
            Allowed::Any => true,
        }
    }
}

impl fmt::Debug for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Allowed::None => f.write_str("AllowedOrigins::none()"),
            Allowed::List(origins) => write!(f, "AllowedOrigins::list({origins:?})"),
            Allowed::Matching(_) => f.write_str("AllowedOrigins::matching(..)"),
            Allowed::Any => f.write_str("AllowedOrigins::any()"),
        }
    }
}

/// Refuses a `POST` whose body is not `application/octet-stream` (`415`), or a request that a
/// browser sent from an origin other than the server's own and not allowed (`403`). A `PUT`
/// (an upload's bytes) may say any content type, or none: no page of another site can send
/// one without a CORS preflight, whatever its type.
pub(super) fn check(parts: &Parts, allowed: &AllowedOrigins) -> Result<(), (StatusCode, String)> {
    let has_body = parts.method == http::Method::POST;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if has_body && !content_type.is_some_and(|t| t.eq_ignore_ascii_case("application/octet-stream"))
    {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body must be sent as `Content-Type: application/octet-stream`, not {}",
                content_type.map_or("none".into(), |t| format!("`{t}`"))
            ),
        ));
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    match (header("origin"), header("sec-fetch-site")) {
        (Some(origin), _) if same_origin(origin, parts) || allowed.allows(origin) => Ok(()),
        (Some(origin), _) => Err((
            StatusCode::FORBIDDEN,
            format!(
                "requests from pages of {origin} are not allowed; the server allows its own \
                 origin and those of `CrudpBuilder::allowed_origins`"
            ),
        )),
        (None, Some("cross-site" | "same-site")) => Err((
            StatusCode::FORBIDDEN,
            "a request from another site without an `Origin` header is not allowed".into(),
        )),
        (None, _) => Ok(()),
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request was sent to.
fn same_origin(origin: &str, parts: &Parts) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::post("/crudp/call");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    const OCTETS: (&str, &str) = ("content-type", "application/octet-stream");

    fn status(headers: &[(&str, &str)], allowed: &AllowedOrigins) -> u16 {
        check(&parts(headers), allowed).map_or_else(|(status, _)| status.as_u16(), |()| 200)
    }

    #[test]
    fn only_octet_streams_from_the_servers_own_or_allowed_origins_pass() {
        let none = AllowedOrigins::default();
        let host = ("host", "api.example:8080");
        for simple in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert_eq!(status(&[("content-type", simple), host], &none), 415);
        }
        assert_eq!(status(&[host], &none), 415, "no content type");
        assert_eq!(
            status(&[OCTETS, host], &none),
            200,
            "no Origin: not a browser"
        );
        let typed = ("content-type", "Application/Octet-Stream; charset=x");
        assert_eq!(status(&[typed, host], &none), 200);
        let own = ("origin", "https://api.example:8080");
        assert_eq!(status(&[OCTETS, host, own], &none), 200);
        let evil = ("origin", "https://evil.example");
        assert_eq!(status(&[OCTETS, host, evil], &none), 403);
        assert_eq!(status(&[OCTETS, host, ("origin", "null")], &none), 403);
        for site in ["cross-site", "same-site"] {
            assert_eq!(
                status(&[OCTETS, host, ("sec-fetch-site", site)], &none),
                403
            );
        }
        let same = ("sec-fetch-site", "same-origin");
        assert_eq!(status(&[OCTETS, host, same], &none), 200);

        let app = ("origin", "https://app.example");
        let listed = AllowedOrigins::list(["https://app.example"]);
        assert_eq!(status(&[OCTETS, host, app], &listed), 200);
        assert_eq!(status(&[OCTETS, host, evil], &listed), 403);
        let matching = AllowedOrigins::matching(|o| o.ends_with(".example"));
        assert_eq!(status(&[OCTETS, host, evil], &matching), 200);
        assert_eq!(status(&[OCTETS, host, evil], &AllowedOrigins::any()), 200);
    }

    #[test]
    fn an_uploads_put_may_say_any_content_type_but_not_come_from_another_site() {
        let put = |headers: &[(&str, &str)]| {
            let mut parts = parts(headers);
            parts.method = http::Method::PUT;
            check(&parts, &AllowedOrigins::default()).map_or_else(|(s, _)| s.as_u16(), |()| 200)
        };
        let host = ("host", "api.example:8080");
        assert_eq!(put(&[host]), 200, "no content type");
        assert_eq!(put(&[host, ("content-type", "text/plain")]), 200);
        assert_eq!(put(&[host, ("origin", "https://evil.example")]), 403);
    }
}
