//! An application's SQLite database whose changes commit together with a record of the call
//! that made them: for servers whose exactly-once state lives elsewhere (a shared backend),
//! so that a call run again after the instance that ran it died (its outcome never reached
//! the shared store) changes nothing twice.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Serialize, de::DeserializeOwned};

use super::sqlite::{blocking, committed_or_retried, lock, sql, unix_now};
use crate::context::{Context, RetryLater};

/// How long the record of a call is kept: longer than any client keeps re-sending it.
const KEEP_SECS: i64 = 30 * 24 * 3600;

/// An application's SQLite database (WAL) in which each call's writes commit together with
/// the call's result, by [`transaction`](Self::transaction); see the module documentation.
///
/// ```no_run
/// # use crudp_runtime::{Context, RetryLater, outcomes::SqliteEffects};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Todo { id: i64, title: String }
/// # #[derive(serde::Serialize, serde::Deserialize)] enum TodoError { Storage(String) }
/// # impl From<RetryLater> for TodoError { fn from(r: RetryLater) -> Self { TodoError::Storage(r.to_string()) } }
/// # async fn doc(db: SqliteEffects, ctx: &Context, title: String) -> Result<Todo, TodoError> {
/// db.transaction(ctx, move |db| {
///     db.execute("INSERT INTO todos (title) VALUES (?1)", [&title])
///         .map_err(|e| TodoError::Storage(e.to_string()))?;
///     Ok(Todo { id: db.last_insert_rowid(), title })
/// })
/// .await
/// # }
/// ```
///
/// Several server processes may share the file.
#[derive(Clone)]
pub struct SqliteEffects {
    db: Arc<Mutex<Connection>>,
}

impl SqliteEffects {
    /// Opens (or creates) the database at `path`, with its table of call records.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or set up.
    pub fn open(path: impl AsRef<Path>) -> rusqlite::Result<Self> {
        let db = Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS crudp_effects (
                 client INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 result BLOB NOT NULL,
                 at INTEGER NOT NULL,
                 PRIMARY KEY (client, seq)
             );
             CREATE INDEX IF NOT EXISTS crudp_effects_at ON crudp_effects (at);",
        )?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// Runs `query` on the database, on a blocking thread.
    pub async fn connection<T, F>(&self, query: F) -> T
    where
        F: FnOnce(&Connection) -> T + Send + 'static,
        T: Send + 'static,
    {
        let db = Arc::clone(&self.db);
        blocking(move || query(&lock(&db))).await
    }

    /// Runs a handler's writes in one transaction with a record of its call and its result,
    /// on a blocking thread. If the call was recorded before (an instance ran it and died
    /// before its outcome reached the shared store), `work` does not run and the recorded
    /// result is returned again. When `work` returns `Err`, its writes are rolled back and
    /// the error is recorded. When the database fails, nothing is written and the call is
    /// retried later ([`Context::retry_later`]).
    pub async fn transaction<T, E, F>(&self, ctx: &Context, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Serialize + DeserializeOwned + From<RetryLater> + Send + 'static,
    {
        let id = ctx.request_id();
        let db = Arc::clone(&self.db);
        let done = blocking(move || -> rusqlite::Result<Result<T, E>> {
            let mut db = lock(&db);
            let mut tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A local call (sequence number 0) has nothing to record.
            let recorded = id.seq > 0;
            if recorded {
                let before: Option<Vec<u8>> = tx
                    .query_row(
                        "SELECT result FROM crudp_effects WHERE client = ?1 AND seq = ?2",
                        params![sql(id.client.0), sql(id.seq)],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(result) = before.and_then(|b| postcard::from_bytes(&b).ok()) {
                    return Ok(result);
                }
            }
            let result = {
                let savepoint = tx.savepoint()?;
                let result = work(&savepoint);
                if result.is_ok() {
                    savepoint.commit()?;
                }
                result
            };
            if recorded {
                let encoded = postcard::to_stdvec(&result).expect("a result always encodes");
                tx.execute(
                    "INSERT INTO crudp_effects (client, seq, result, at) VALUES (?1, ?2, ?3, ?4)",
                    params![sql(id.client.0), sql(id.seq), encoded, unix_now()],
                )?;
                tx.execute(
                    "DELETE FROM crudp_effects WHERE at < ?1",
                    [unix_now() - KEEP_SECS],
                )?;
            }
            tx.commit()?;
            Ok(result)
        })
        .await;
        committed_or_retried(ctx, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{User, protocol::ClientId};

    fn count(db: &Connection) -> i64 {
        db.query_row("SELECT COUNT(*) FROM items", [], |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_call_run_again_changes_nothing_twice_and_answers_the_same() {
        let dir = std::env::temp_dir().join(format!("crudp-effects-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = SqliteEffects::open(dir.join("app.db")).unwrap();
        db.connection(|db| db.execute_batch("CREATE TABLE items (name TEXT)"))
            .await
            .unwrap();
        let call = Context::local(User::new("ann", "guest"), ClientId(1)).for_seq(1);
        let insert = |name: &'static str| {
            move |db: &Connection| -> Result<i64, String> {
                db.execute("INSERT INTO items (name) VALUES (?1)", [name])
                    .map_err(|e| e.to_string())?;
                Ok(db.last_insert_rowid())
            }
        };
        let first = db.transaction(&call, insert("a")).await;
        // Run again (its outcome never reached the shared store): the same answer, no write.
        let again = db.transaction(&call, insert("b")).await;
        assert_eq!((first.clone(), again), (Ok(1), first));
        // Another call runs; an error rolls back and is answered again.
        let failing = call.for_seq(2);
        let fail = |db: &Connection| -> Result<i64, String> {
            db.execute("INSERT INTO items (name) VALUES ('c')", [])
                .map_err(|e| e.to_string())?;
            Err("no".into())
        };
        assert_eq!(db.transaction(&failing, fail).await, Err("no".into()));
        assert_eq!(
            db.transaction(&failing, insert("d")).await,
            Err("no".into())
        );
        // A local call (no sequence number) runs every time.
        let local = Context::local(User::new("ann", "guest"), ClientId(1));
        db.transaction(&local, insert("e")).await.unwrap();
        db.transaction(&local, insert("f")).await.unwrap();
        assert_eq!(db.connection(count).await, 3);
        let _ = std::fs::remove_dir_all(dir);
    }
}
