//! The todos, in SQLite: a file created on first run.

use std::{
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use crudp::{Context, Target};
use example_api::{Board, Todo, TodoError, Todos};
use rusqlite::{Connection, OptionalExtension, params};

/// The todo board over one SQLite connection; queries are short, so a lock serves. Clones
/// share the connection, so both modules can hold one.
#[derive(Clone)]
pub(crate) struct Store {
    db: Arc<Mutex<Connection>>,
}

impl Store {
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Self> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS todos (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 title TEXT NOT NULL,
                 done INTEGER NOT NULL DEFAULT 0
             );",
        )?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: u64) -> Result<Todo, TodoError> {
        let id = sql_id(id)?;
        self.db()
            .query_row("SELECT id, title, done FROM todos WHERE id = ?1", [id], row)
            .optional()
            .map_err(storage)?
            .ok_or(TodoError::NotFound)
    }
}

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Todo> {
    Ok(Todo {
        id: row.get::<_, i64>(0)? as u64,
        title: row.get(1)?,
        done: row.get(2)?,
    })
}

/// SQLite's rowids are `i64`; an ID beyond them names no todo.
fn sql_id(id: u64) -> Result<i64, TodoError> {
    i64::try_from(id).map_err(|_| TodoError::NotFound)
}

fn storage(e: rusqlite::Error) -> TodoError {
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
        let db = self.db();
        db.execute("INSERT INTO todos (title) VALUES (?1)", [&title])
            .map_err(storage)?;
        let todo = Todo {
            id: db.last_insert_rowid() as u64,
            title,
            done: false,
        };
        // Everyone's pages show the new todo at once.
        ctx.broadcast(Target::All);
        Ok(todo)
    }
    // ANCHOR_END: create

    async fn read(&self, _: &Context, id: u64) -> Result<Todo, TodoError> {
        self.get(id)
    }

    async fn update(&self, ctx: &Context, todo: Todo) -> Result<Todo, TodoError> {
        check_title(&todo.title)?;
        let changed = self
            .db()
            .execute(
                "UPDATE todos SET title = ?1, done = ?2 WHERE id = ?3",
                params![todo.title, todo.done, sql_id(todo.id)?],
            )
            .map_err(storage)?;
        if changed == 0 {
            return Err(TodoError::NotFound);
        }
        ctx.broadcast(Target::All);
        Ok(todo)
    }

    async fn delete(&self, ctx: &Context, id: u64) -> Result<(), TodoError> {
        let deleted = self
            .db()
            .execute("DELETE FROM todos WHERE id = ?1", [sql_id(id)?])
            .map_err(storage)?;
        if deleted == 0 {
            return Err(TodoError::NotFound);
        }
        // Only admins' pages hear of deletions live; the others see them on their next load.
        ctx.broadcast(Target::Role("admin".into()));
        Ok(())
    }
}

impl Board for Store {
    async fn read(&self, _: &Context) -> Result<Vec<Todo>, TodoError> {
        let db = self.db();
        let mut query = db
            .prepare("SELECT id, title, done FROM todos ORDER BY id")
            .map_err(storage)?;
        let todos = query
            .query_map([], row)
            .map_err(storage)?
            .collect::<Result<_, _>>();
        todos.map_err(storage)
    }
}
