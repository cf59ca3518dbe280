//! The answers the endpoints share: refusals with a readable message, and the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The instant `wait` from now; for a wait past the clock's end (`Duration::MAX`), one that
/// never comes in practice, thirty years on.
pub(super) fn after(wait: Duration) -> tokio::time::Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    let now = tokio::time::Instant::now();
    now.checked_add(wait).unwrap_or(now + FAR)
}

/// `503 Service Unavailable` with `Retry-After: 1`.
pub(super) fn unavailable(message: String) -> Response {
    let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Marks an answer given before the request's body was read to its end. The connection is closed
/// after it (`Connection: close`): a client that finished sending the body meanwhile would
/// otherwise send its next request on a connection the server is about to drop.
pub(super) fn close_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A plain-text refusal. Messages never include the request's URI, which may carry a token.
pub(super) fn refuse(status: StatusCode, message: String) -> Response {
    tracing::debug!(%status, "refused a request: {message}");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}
