//! `PUT`, `GET` and `DELETE /upload/{id}`: uploads that go on where they stopped, each of the
//! one user who started it.
//!
//! - `PUT /upload/{id}?offset=N&size=S&sha256=HEX` (any content type): the file's
//!   bytes from `N` on, all or some of them. Answers `200` with the postcard
//!   [`UploadStatus`]; once all `S` bytes are there and their SHA-256 is `HEX`, it is
//!   `complete`. A first `PUT` (at `0`) starts the upload for its user.
//! - `GET /upload/{id}`: its [`UploadStatus`], to learn where to go on.
//! - `DELETE /upload/{id}`: removes it.

use axum::{
    extract::{Path, Query, Request, State, rejection::QueryRejection},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde::Deserialize;

use super::{
    Crudp, MIN_UPLOAD_RATE,
    reply::{close_after, refuse, unavailable},
};
use crate::{
    context::User,
    files::{FileError, FileId, Files, UploadStatus, parse_sha256},
};

/// The query of a `PUT`.
#[derive(Deserialize)]
pub(super) struct Announced {
    offset: u64,
    size: u64,
    sha256: String,
}

/// The status, answer to an error, for each [`FileError`].
fn refusal(error: FileError) -> Response {
    let status = match &error {
        FileError::NotConfigured => StatusCode::NOT_IMPLEMENTED,
        FileError::NotFound(_) => StatusCode::NOT_FOUND,
        FileError::Forbidden(_) => StatusCode::FORBIDDEN,
        FileError::Pending(_) | FileError::Conflict(_) | FileError::Mismatch(_) => {
            StatusCode::CONFLICT
        }
        FileError::TooLarge { .. }
        | FileError::Quota { .. }
        | FileError::TooManyFiles { .. }
        | FileError::TooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        FileError::Checksum(_) => StatusCode::UNPROCESSABLE_ENTITY,
        FileError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        FileError::Busy(message) => return unavailable(message.clone()),
    };
    refuse(status, error.to_string())
}

fn answer(status: UploadStatus) -> Response {
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        postcard::to_stdvec(&status).expect("a status always encodes"),
    )
        .into_response()
}

/// Authenticates the request and finds the store and the upload's ID.
async fn admit(crudp: &Crudp, parts: &Parts, id: &str) -> Result<(User, Files, FileId), Response> {
    let user = crudp.authenticate(parts).await?;
    let files = crudp
        .shared
        .files
        .clone()
        .ok_or_else(|| refusal(FileError::NotConfigured))?;
    let id = id.parse().map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an upload ID: {e}"),
        )
    })?;
    Ok((user, files, id))
}

pub(super) async fn put(
    State(crudp): State<Crudp>,
    Path(id): Path<String>,
    announced: Result<Query<Announced>, QueryRejection>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    // Every answer before the body is read closes the connection.
    let (user, files, id) = match admit(&crudp, &parts, &id).await {
        Ok(admitted) => admitted,
        Err(response) => return close_after(response),
    };
    let Ok(Query(announced)) = announced else {
        return close_after(refuse(
            StatusCode::BAD_REQUEST,
            "a `PUT` names where its bytes start, the file's size and its SHA-256: \
             `?offset=N&size=S&sha256=<64 hex digits>`"
                .into(),
        ));
    };
    let Some(sha256) = parse_sha256(&announced.sha256) else {
        return close_after(refuse(
            StatusCode::BAD_REQUEST,
            "`sha256` must be the file's SHA-256 digest as 64 hex digits".into(),
        ));
    };
    // Anonymous visitors share a quota per address: their identities cost nothing.
    let account = super::router::share(&parts, &user);
    let begun = files
        .begin(
            id,
            &user.id,
            &account,
            announced.size,
            sha256,
            announced.offset,
        )
        .await;
    let mut writer = match begun {
        Ok(Ok(writer)) => writer,
        Ok(Err(complete)) => return close_after(answer(complete)),
        Err(e) => return close_after(refusal(e)),
    };
    let timeout = crudp.shared.limits.body_timeout;
    let mut body = body.into_data_stream();
    let (began, mut arrived) = (tokio::time::Instant::now(), 0u64);
    loop {
        match tokio::time::timeout(timeout, body.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(bytes))) => {
                arrived += bytes.len() as u64;
                let took = began.elapsed();
                if took > timeout && arrived < MIN_UPLOAD_RATE.saturating_mul(took.as_secs()) {
                    // A body that trickles would hold its writer's slot for as long as it
                    // liked: what arrived is kept, to go on from.
                    let _ = writer.push(bytes).await;
                    let _ = writer.flush_unless_taken().await;
                    return close_after(refuse(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the body arrived at {} bytes a second, under the least an upload \
                             must keep to, {MIN_UPLOAD_RATE}: send the rest again from its offset",
                            arrived / took.as_secs().max(1)
                        ),
                    ));
                }
                if let Err(e) = writer.push(bytes).await {
                    // What fits is kept; the upload is settled before the refusal.
                    if let FileError::TooLong { .. } = e
                        && let Err(settling) = writer.finish().await
                    {
                        return close_after(refusal(settling));
                    }
                    return close_after(refusal(e));
                }
            }
            Ok(Some(Err(e))) => {
                // The client went away, and may go on at once, at another server sharing the
                // store. The parts written are kept; the bytes not yet written as one are
                // dropped: written now, as a shorter part, they could land after that server
                // wrote its own part at the same offset, and replace it.
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {e}"),
                );
            }
            Err(_) => {
                let _ = writer.flush_unless_taken().await;
                return close_after(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("no bytes of the body arrived for {timeout:?}"),
                ));
            }
        }
    }
    match writer.finish().await {
        Ok(status) => answer(status),
        Err(e) => refusal(e),
    }
}

pub(super) async fn status(
    State(crudp): State<Crudp>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let (user, files, id) = match admit(&crudp, &parts, &id).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    match files.status(id, &user.id).await {
        Ok(status) => answer(status),
        Err(e) => refusal(e),
    }
}

pub(super) async fn cancel(
    State(crudp): State<Crudp>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let (user, files, id) = match admit(&crudp, &parts, &id).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    match files.cancel(id, &user.id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refusal(e),
    }
}
