//! Files attached to todos: the `Attachments` module over the same SQLite file, and the
//! download route.

use axum::{
    extract::{Path, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use crudp::{
    Context, Target,
    files::{FileId, FileRef},
    server::{Crudp, FileError},
};
use example_api::{Attachment, Attachments, TodoError};
use rusqlite::{OptionalExtension, params};

use crate::store::{Store, sql_id, storage};

/// The table, created if needed.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS attachments (
    file TEXT PRIMARY KEY,
    todo INTEGER NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    by TEXT NOT NULL
);";

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Attachment> {
    let id: String = row.get(0)?;
    let sha256: Vec<u8> = row.get(4)?;
    Ok(Attachment {
        todo: row.get::<_, i64>(1)? as u64,
        file: FileRef::uploaded(
            id.parse().unwrap_or(FileId(0)),
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)? as u64,
            sha256.try_into().unwrap_or([0; 32]),
        ),
        by: row.get(5)?,
    })
}

fn refused(e: FileError) -> TodoError {
    TodoError::Invalid(e.to_string())
}

impl Attachments for Store {
    async fn create(
        &self,
        ctx: &Context,
        todo: u64,
        file: FileRef,
    ) -> Result<Attachment, TodoError> {
        let id = sql_id(todo)?;
        if file.inline_bytes().is_some() {
            return Err(TodoError::Invalid("upload the file first".into()));
        }
        // The file is complete, its digest checked, and this user's: or the call waits.
        ctx.open(&file).await.map_err(refused)?;
        ctx.broadcast(Target::All);
        let attachment = Attachment {
            todo,
            file: FileRef::uploaded(file.id, file.name, file.size, file.sha256),
            by: ctx.user().id.clone(),
        };
        self.db
            .transaction(ctx, move |db| {
                let exists = db
                    .query_row("SELECT 1 FROM todos WHERE id = ?1", [id], |_| Ok(()))
                    .optional()
                    .map_err(storage)?;
                if exists.is_none() {
                    return Err(TodoError::NotFound);
                }
                let file = &attachment.file;
                db.execute(
                    "INSERT OR REPLACE INTO attachments (file, todo, name, size, sha256, by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        file.id.to_string(),
                        id,
                        file.name,
                        file.size as i64,
                        &file.sha256[..],
                        attachment.by
                    ],
                )
                .map_err(storage)?;
                Ok(attachment)
            })
            .await
    }

    async fn read(&self, _: &Context) -> Result<Vec<Attachment>, TodoError> {
        self.query(|db| {
            let mut query = db
                .prepare_cached(
                    "SELECT file, todo, name, size, sha256, by FROM attachments ORDER BY rowid",
                )
                .map_err(storage)?;
            let all = query
                .query_map([], row)
                .map_err(storage)?
                .collect::<Result<_, _>>();
            all.map_err(storage)
        })
        .await
    }
}

/// `GET /files/{id}`: an attached file, for anyone signed in.
pub(crate) async fn download(
    State((api, store)): State<(Crudp, Store)>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    if crate::signin::authenticate(&parts).is_err() {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    }
    let Ok(id) = id.parse::<FileId>() else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let found = store
        .query(move |db| {
            db.query_row(
                "SELECT file, todo, name, size, sha256, by FROM attachments WHERE file = ?1",
                [id.to_string()],
                row,
            )
            .optional()
            .map_err(storage)
        })
        .await;
    let Ok(Some(attachment)) = found else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let Some(files) = api.files() else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    match files.open(&attachment.file).await {
        Ok(reader) => {
            let name = attachment.file.name.replace(['"', '\\', '\r', '\n'], "_");
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_LENGTH, reader.size().to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                reader.into_body(),
            )
                .into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
