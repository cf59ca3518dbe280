//! The todos, in SQLite: a file created on first run.

use crudp::{
    Context, Target,
    server::{SqliteEffects, SqliteOutcomes, StoreError},
};
use example_api::{Board, Todo, TodoError, Todos};
use rusqlite::{Connection, OptionalExtension, params};

/// The todo board in SQLite, where each change commits together with its call's outcome.
/// Clones share the file, so both modules can hold one.
#[derive(Clone)]
pub(crate) struct Store {
    pub(crate) db: Db,
}

/// The file: the exactly-once store's own (one server), or one whose writes record their
/// calls (servers that share a Redis backend and this file).
#[derive(Clone)]
pub(crate) enum Db {
    Outcomes(SqliteOutcomes),
    Effects(SqliteEffects),
}

impl Db {
    async fn connection<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> T {
        match self {
            Db::Outcomes(db) => db.connection(query).await,
            Db::Effects(db) => db.connection(query).await,
        }
    }

    pub(crate) async fn transaction<T, F>(&self, ctx: &Context, work: F) -> Result<T, TodoError>
    where
        F: FnOnce(&Connection) -> Result<T, TodoError> + Send + 'static,
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        match self {
            Db::Outcomes(db) => db.transaction(ctx, work).await,
            Db::Effects(db) => db.transaction(ctx, work).await,
        }
    }
}

impl Store {
    /// The store over `db`, whose todo table is created if needed.
    pub(crate) async fn open(db: Db) -> Result<Self, StoreError> {
        db.connection(|db| {
            db.execute_batch(
                "CREATE TABLE IF NOT EXISTS todos (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     title TEXT NOT NULL,
                     done INTEGER NOT NULL DEFAULT 0,
                     by_user TEXT NOT NULL DEFAULT ''
                 );",
            )?;
            // A board kept by an earlier version of the demo has no `by_user` yet.
            let columns: Vec<String> = db
                .prepare("SELECT name FROM pragma_table_info('todos')")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if !columns.iter().any(|c| c == "by_user") {
                db.execute_batch("ALTER TABLE todos ADD COLUMN by_user TEXT NOT NULL DEFAULT ''")?;
            }
            db.execute_batch(crate::attachments::SCHEMA)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self { db })
    }

    /// Reads, on the database's thread.
    pub(crate) async fn query<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, TodoError> + Send + 'static,
    ) -> Result<T, TodoError> {
        self.db.connection(query).await
    }
}

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Todo> {
    Ok(Todo {
        id: row.get::<_, i64>(0)? as u64,
        title: row.get(1)?,
        done: row.get(2)?,
        by: row.get(3)?,
    })
}

/// SQLite's rowids are `i64`; an ID beyond them names no todo.
pub(crate) fn sql_id(id: u64) -> Result<i64, TodoError> {
    i64::try_from(id).map_err(|_| TodoError::NotFound)
}

pub(crate) fn storage(e: rusqlite::Error) -> TodoError {
    tracing::error!("database error: {e}");
    TodoError::Invalid("the board could not be saved; try again".into())
}

fn check_title(title: &str) -> Result<(), TodoError> {
    match title.trim() {
        "" => Err(TodoError::Invalid("the title is empty".into())),
        t if t.len() > 200 => Err(TodoError::Invalid(
            "the title is longer than 200 bytes".into(),
        )),
        _ => Ok(()),
    }
}

impl Todos for Store {
    // ANCHOR: create
    async fn create(&self, ctx: &Context, title: String) -> Result<Todo, TodoError> {
        check_title(&title)?;
        // Everyone's pages show the new todo at once.
        ctx.broadcast(Target::All);
        let by = ctx.user().id.clone();
        // The insert and the call's outcome commit together: never lost, never twice.
        self.db
            .transaction(ctx, move |db| {
                db.execute(
                    "INSERT INTO todos (title, by_user) VALUES (?1, ?2)",
                    [&title, &by],
                )
                .map_err(storage)?;
                Ok(Todo {
                    id: db.last_insert_rowid() as u64,
                    title,
                    done: false,
                    by,
                })
            })
            .await
    }
    // ANCHOR_END: create

    async fn read(&self, _: &Context, id: u64) -> Result<Todo, TodoError> {
        let id = sql_id(id)?;
        self.query(move |db| {
            db.query_row(
                "SELECT id, title, done, by_user FROM todos WHERE id = ?1",
                [id],
                row,
            )
            .optional()
            .map_err(storage)?
            .ok_or(TodoError::NotFound)
        })
        .await
    }

    async fn update(&self, ctx: &Context, todo: Todo) -> Result<Todo, TodoError> {
        check_title(&todo.title)?;
        let id = sql_id(todo.id)?;
        ctx.broadcast(Target::All);
        let todo = Todo {
            by: ctx.user().id.clone(),
            ..todo
        };
        self.db
            .transaction(ctx, move |db| {
                let changed = db
                    .execute(
                        "UPDATE todos SET title = ?1, done = ?2, by_user = ?3 WHERE id = ?4",
                        params![todo.title, todo.done, todo.by, id],
                    )
                    .map_err(storage)?;
                if changed == 0 {
                    return Err(TodoError::NotFound);
                }
                Ok(todo)
            })
            .await
    }

    async fn delete(&self, ctx: &Context, id: u64) -> Result<(), TodoError> {
        let id = sql_id(id)?;
        // Everyone's pages drop it at once: their listeners hear the ID.
        ctx.broadcast(Target::All);
        self.db
            .transaction(ctx, move |db| {
                let deleted = db
                    .execute("DELETE FROM todos WHERE id = ?1", [id])
                    .map_err(storage)?;
                if deleted == 0 {
                    return Err(TodoError::NotFound);
                }
                Ok(())
            })
            .await
    }
}

impl Board for Store {
    async fn read(&self, ctx: &Context) -> Result<Vec<Todo>, TodoError> {
        // Pages read the board when they open, and again only when broadcasts may have been
        // missed (a reset): the end-to-end tests count these lines.
        tracing::info!(user = %ctx.user().id, "board read");
        self.query(|db| {
            let mut query = db
                .prepare_cached("SELECT id, title, done, by_user FROM todos ORDER BY id")
                .map_err(storage)?;
            let todos = query
                .query_map([], row)
                .map_err(storage)?
                .collect::<Result<_, _>>();
            todos.map_err(storage)
        })
        .await
    }
}
