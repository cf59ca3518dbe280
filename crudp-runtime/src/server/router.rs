//! The HTTP endpoints.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};

use super::Crudp;
use crate::{
    context::Context,
    protocol::{decode_batch, encode_results},
};

impl Crudp {
    /// The axum router with the CRUDP endpoints; nest it under a prefix of your choice,
    /// e.g. `Router::new().nest("/crudp", api.router())`.
    ///
    /// - `POST /call`: a postcard [`Batch`](crate::Batch) in, `200 OK` with the postcard
    ///   [`Results`](crate::Results) out.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/call", post(call))
            .with_state(self.clone())
    }
}

async fn call(State(crudp): State<Crudp>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limits = crudp.shared.limits;
    let user = match crudp.shared.authenticator.authenticate(&parts).await {
        Ok(user) => user,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.to_string()),
    };
    let bytes = match read_body(body, limits.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let batch = match decode_batch(&bytes, limits.max_packets) {
        Ok(batch) => batch,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("invalid batch: {e}")),
    };
    let ctx = Context::new(user, batch.client, parts);
    let results = crudp.execute(&ctx, batch.packets).await;
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        encode_results(&results),
    )
        .into_response()
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    };
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if is_length_limit(&e) => Err(too_large()),
        Err(e) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}"),
        )),
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn refuse(status: StatusCode, message: String) -> Response {
    tracing::debug!(%status, "refused a request: {message}");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}
