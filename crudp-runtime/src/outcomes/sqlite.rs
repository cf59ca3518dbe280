//! The durable outcome store: a SQLite file (WAL) that survives restarts, and in which a
//! handler can commit its own writes together with its call's outcome.

use std::{
    collections::HashSet,
    path::Path,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::{
    Begin, Claim, Lease, OutcomeLimits, OutcomeStore, StoreError,
    ledger::{Finished, Ledger, Saved},
    outcome_bytes,
};
use crate::{
    context::{Context, RetryLater},
    dispatch::{BoxFuture, encode_result},
    protocol::{ClientId, Outcome},
};

/// How often outcomes and clients past their time are removed from the file.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The durable [`OutcomeStore`]: exactly-once that survives restarts, in one SQLite file.
///
/// ```no_run
/// # fn doc() -> Result<(), crudp_runtime::outcomes::StoreError> {
/// use crudp_runtime::{outcomes::SqliteOutcomes, server::Crudp};
///
/// let outcomes = SqliteOutcomes::open("app.db")?;
/// let api = Crudp::builder().outcome_store(outcomes.clone()) /* .handler(..) */ .build();
/// # Ok(())
/// # }
/// ```
///
/// - Claims are written before they are granted, so a client ID never changes owner, even
///   across restarts.
/// - A batch's outcomes are committed before its results are sent. A packet answered once is
///   answered the same way after a restart, never run again.
/// - A handler that writes to the same file can commit its writes and its outcome in one
///   transaction with [`transaction`](Self::transaction): a crash can then neither lose nor
///   repeat the call. A handler that writes elsewhere and is killed between its write and the
///   commit of its outcome runs again when its client re-sends it.
///
/// The file is opened in WAL mode with `synchronous = NORMAL`: committed outcomes survive a
/// crash of the process; an operating-system crash or a power loss may lose the last ones
/// (run `PRAGMA synchronous = FULL` through [`connection`](Self::connection) for those).
/// One server process uses a file at a time. All database work runs on Tokio's blocking
/// threads, never on the workers that serve requests.
#[derive(Clone)]
pub struct SqliteOutcomes {
    inner: Arc<Inner>,
}

struct Inner {
    limits: OutcomeLimits,
    db: Arc<Mutex<Connection>>,
    ledger: Mutex<Ledger>,
    pending: Mutex<Pending>,
    /// One flush at a time: a flush that returns has made durable everything finished before
    /// it began, even what a concurrent flush took. It holds when the file was last pruned.
    flushing: tokio::sync::Mutex<Instant>,
    /// The last flush failed: nothing begins until one succeeds, so that outcomes waiting to
    /// be written do not pile up while the file cannot take them.
    failing: AtomicBool,
}

#[derive(Default)]
struct Pending {
    outcomes: Vec<(ClientId, u64, Outcome)>,
    clients: HashSet<ClientId>,
}

impl SqliteOutcomes {
    /// Opens (creating if needed) the store in the SQLite file at `path`, with default
    /// [`OutcomeLimits`]. The application may keep its own tables in the same file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, OutcomeLimits::default())
    }

    /// Opens the store with these limits. [`OutcomeLimits::total_bytes`] bounds the outcomes
    /// held in memory; the file keeps up to [`OutcomeLimits::outcomes_per_client`] per client
    /// for [`OutcomeLimits::idle`].
    pub fn open_with(path: impl AsRef<Path>, limits: OutcomeLimits) -> Result<Self, StoreError> {
        let db = Connection::open(path).map_err(unavailable)?;
        // The busy timeout first: switching to WAL waits for another connection's lock too.
        db.execute_batch(
            "PRAGMA busy_timeout = 5000;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS crudp_clients (
                 client INTEGER PRIMARY KEY,
                 owner TEXT NOT NULL,
                 mark INTEGER NOT NULL,
                 seen INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS crudp_clients_owner ON crudp_clients (owner);
             CREATE INDEX IF NOT EXISTS crudp_clients_seen ON crudp_clients (seen);
             CREATE TABLE IF NOT EXISTS crudp_outcomes (
                 client INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 outcome BLOB NOT NULL,
                 PRIMARY KEY (client, seq)
             ) WITHOUT ROWID;",
        )
        .map_err(unavailable)?;
        // A file of an earlier version kept the packet each client was stalled at, which this
        // one no longer does: cleared, so that an earlier version sharing it (a rolling
        // deploy, a roll-back) finds no client blocked by what it can no longer clear.
        let stalled: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('crudp_clients') WHERE name = 'stalled'",
                [],
                |row| row.get(0),
            )
            .map_err(unavailable)?;
        if stalled > 0 {
            db.execute(
                "UPDATE crudp_clients SET stalled = NULL WHERE stalled IS NOT NULL",
                [],
            )
            .map_err(unavailable)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                ledger: Mutex::new(Ledger::new(limits.clone(), true)),
                limits,
                db: Arc::new(Mutex::new(db)),
                pending: Mutex::default(),
                flushing: tokio::sync::Mutex::new(Instant::now()),
                failing: AtomicBool::new(false),
            }),
        })
    }

    /// Runs `work` on the store's connection, on a blocking thread: for the application's
    /// own tables in the same file (creating them, reading them).
    pub async fn connection<R, F>(&self, work: F) -> R
    where
        F: FnOnce(&Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let db = Arc::clone(&self.inner.db);
        blocking(move || work(&lock(&db))).await
    }

    /// Runs a handler's writes and records its call's outcome in one SQLite transaction, on
    /// a blocking thread: after a crash the call has happened with its outcome kept, or not
    /// at all, never half and never twice.
    ///
    /// `work` gets the transaction (as a [`Connection`]) and returns the handler's result;
    /// the handler returns what this returns. When `work` returns `Err`, its writes are
    /// rolled back and the error is recorded as the call's outcome. When the store itself
    /// fails, nothing is written, the call is retried later ([`Context::retry_later`]) and
    /// the `Err` carries [`RetryLater`], which the client never sees. Nor does `work` run
    /// for a call answered `Timeout` while its transaction waited for the file (its handler
    /// ran out of `handler_timeout`): the client was told it was stopped. Work already under
    /// way when the handler runs out of time cannot be stopped, and still commits its writes.
    ///
    /// ```no_run
    /// # use crudp_runtime::{Context, RetryLater, outcomes::SqliteOutcomes};
    /// # #[derive(serde::Serialize)] struct Todo { id: i64, title: String }
    /// # #[derive(serde::Serialize)] enum TodoError { Storage(String) }
    /// # impl From<RetryLater> for TodoError { fn from(r: RetryLater) -> Self { TodoError::Storage(r.to_string()) } }
    /// # async fn doc(outcomes: SqliteOutcomes, ctx: &Context, title: String) -> Result<Todo, TodoError> {
    /// outcomes
    ///     .transaction(ctx, move |db| {
    ///         db.execute("INSERT INTO todos (title) VALUES (?1)", [&title])
    ///             .map_err(|e| TodoError::Storage(e.to_string()))?;
    ///         Ok(Todo { id: db.last_insert_rowid(), title })
    ///     })
    ///     .await
    /// # }
    /// ```
    ///
    /// Called for a call that the server is not running (a [`Context::local`] one), it only
    /// runs `work` in a transaction.
    pub async fn transaction<T, E, F>(&self, ctx: &Context, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Serialize + Send + 'static,
        E: Serialize + From<RetryLater> + Send + 'static,
    {
        let id = ctx.request_id();
        let ctx_lease = ctx.lease();
        let this = self.clone();
        let (max_bytes, keep) = (
            self.inner.limits.bytes_per_client,
            self.inner.limits.outcomes_per_client,
        );
        let done = blocking(move || -> rusqlite::Result<Result<T, E>> {
            let mut db = lock(&this.inner.db);
            // Under the file's lock: only the first transaction of a packet this process is
            // running records its outcome.
            // With it go the outcomes of the reservation's packets that ran before it: the
            // mark it moves must not pass a packet whose outcome the file lacks.
            let reserved = {
                let ledger = this.ledger();
                if ctx_lease.is_some_and(|lease| !ledger.reserved_by(id.client, id.seq, lease)) {
                    // Its batch stopped (its runtime shut down) while this waited for the
                    // file: the call runs again when re-sent, so its work does not happen now.
                    return Ok(Err(E::from(RetryLater {
                        reason: "the call's batch stopped before its transaction began".into(),
                    })));
                }
                if ledger.timed_out(id.client, id.seq) {
                    // Its handler ran out of time while this waited for the file: the client
                    // was told the call was stopped, so its work does not happen.
                    return Ok(Err(E::from(RetryLater {
                        reason: "the call was answered as timed out before its transaction began"
                            .into(),
                    })));
                }
                (ledger.is_running(id.client, id.seq)
                    && ledger.mark(id.client).is_some_and(|mark| id.seq > mark))
                .then(|| ledger.ran_before(id.client, id.seq))
            };
            let mut tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let result = {
                let mut savepoint = tx.savepoint()?;
                let result = work(&savepoint);
                if result.is_ok() {
                    savepoint.commit()?;
                } else {
                    savepoint.rollback()?;
                }
                result
            };
            let outcome = reserved.map(|earlier| (earlier, encode_result(result.as_ref())));
            if let Some((earlier, outcome)) = &outcome {
                for (seq, earlier) in earlier {
                    write_outcome(&tx, id.client, *seq, earlier, max_bytes)?;
                }
                write_outcome(&tx, id.client, id.seq, outcome, max_bytes)?;
                trim_outcomes(&tx, id.client, id.seq, keep)?;
            }
            tx.commit()?;
            // Before the lock is released and before anything can cancel the handler.
            if let Some((_, outcome)) = outcome {
                this.ledger().committed(id.client, id.seq, outcome);
            }
            Ok(result)
        })
        .await;
        committed_or_retried(ctx, done)
    }

    /// [`finish_batch`](OutcomeStore::finish_batch), which waits for nothing: the final
    /// outcomes are written with the next flush.
    fn finish_now(
        &self,
        client: ClientId,
        lease: Lease,
        outcomes: &[(u64, &Outcome)],
    ) -> Result<(), StoreError> {
        let finished = self
            .ledger()
            .finish_batch(client, lease, outcomes, Instant::now())?;
        let mut pending = self.pending();
        for ((seq, finished), (_, outcome)) in finished.into_iter().zip(outcomes) {
            match finished {
                Finished::Final => {
                    pending.outcomes.push((client, seq, (*outcome).clone()));
                    pending.clients.insert(client);
                }
                Finished::NotRun | Finished::AlreadyFinal => {}
            }
        }
        Ok(())
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        let mut ledger = self
            .inner
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ledger.sweep(Instant::now(), false);
        ledger
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads `client` from the file into the ledger, if the file knows it.
    async fn load(&self, client: ClientId) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || {
            let db = lock(&this.inner.db);
            if let Some(saved) = read_client(&db, client).map_err(unavailable)? {
                this.ledger().load(client, saved, Instant::now());
            }
            Ok(())
        })
        .await
    }

    /// The kept outcomes of `seqs` of `client` in the file, in their order (`Expired` for
    /// those it lacks).
    async fn stored_outcomes(
        &self,
        client: ClientId,
        seqs: Vec<u64>,
    ) -> Result<Vec<Begin>, StoreError> {
        let db = Arc::clone(&self.inner.db);
        blocking(move || {
            let db = lock(&db);
            let mut query = db
                .prepare_cached("SELECT outcome FROM crudp_outcomes WHERE client = ?1 AND seq = ?2")
                .map_err(unavailable)?;
            seqs.into_iter()
                .map(|seq| {
                    let blob: Option<Vec<u8>> = query
                        .query_row(params![sql(client.0), sql(seq)], |row| row.get(0))
                        .optional()
                        .map_err(unavailable)?;
                    Ok(blob
                        .and_then(|blob| postcard::from_bytes(&blob).ok())
                        .map_or(Begin::Expired, Begin::Done))
                })
                .collect()
        })
        .await
    }

    async fn flush_now(&self) -> Result<(), StoreError> {
        let mut last_prune = self.inner.flushing.lock().await;
        let (outcomes, clients) = {
            let mut pending = self.pending();
            let outcomes = std::mem::take(&mut pending.outcomes);
            let ids = std::mem::take(&mut pending.clients);
            drop(pending);
            let ledger = self.ledger();
            let clients: Vec<(ClientId, Saved, u64)> = ids
                .into_iter()
                .filter_map(|id| {
                    let (saved, version) = ledger.dirty(id)?;
                    Some((id, saved, version))
                })
                .collect();
            (outcomes, clients)
        };
        let since = *last_prune;
        let prune = since.elapsed() >= PRUNE_EVERY;
        if outcomes.is_empty() && clients.is_empty() && !prune {
            return Ok(());
        }
        let this = self.clone();
        let limits = self.inner.limits.clone();
        let (written, outcomes, clients) = blocking(move || {
            let written = write(&this, &limits, &outcomes, &clients, prune, since);
            (written, outcomes, clients)
        })
        .await;
        if let Err(e) = written {
            // Keep them for the next flush; the ledger keeps their clients in memory meanwhile.
            self.inner.failing.store(true, Ordering::Release);
            let mut pending = self.pending();
            let later = std::mem::replace(&mut pending.outcomes, outcomes);
            pending.outcomes.extend(later);
            pending
                .clients
                .extend(clients.into_iter().map(|(client, ..)| client));
            return Err(unavailable(e));
        }
        self.inner.failing.store(false, Ordering::Release);
        let mut ledger = self.ledger();
        for (client, _, version) in clients {
            ledger.written(client, version);
        }
        drop(ledger);
        if prune {
            *last_prune = Instant::now();
        }
        Ok(())
    }
}

/// Writes a flush's outcomes and client states in one transaction, and prunes if it is time.
fn write(
    store: &SqliteOutcomes,
    limits: &OutcomeLimits,
    outcomes: &[(ClientId, u64, Outcome)],
    clients: &[(ClientId, Saved, u64)],
    prune: bool,
    since: Instant,
) -> rusqlite::Result<()> {
    let mut db = lock(&store.inner.db);
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = unix_now();
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO crudp_clients (client, owner, mark, seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (client) DO UPDATE SET
                 mark = MAX(mark, excluded.mark), seen = excluded.seen",
        )?;
        for (client, saved, _) in clients {
            upsert.execute(params![sql(client.0), &*saved.owner, sql(saved.mark), now])?;
        }
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO crudp_outcomes (client, seq, outcome) VALUES (?1, ?2, ?3)",
        )?;
        let mut newest = std::collections::HashMap::new();
        for (client, seq, outcome) in outcomes {
            if outcome_bytes(outcome) <= limits.bytes_per_client {
                let blob = crate::dispatch::encode(outcome).expect("an outcome always encodes");
                insert.execute(params![sql(client.0), sql(*seq), blob])?;
            }
            newest.insert(*client, *seq);
        }
        for (client, seq) in newest {
            trim_outcomes(&tx, client, seq, limits.outcomes_per_client)?;
        }
    }
    if prune {
        // Clients in use keep their rows, even those that only listen.
        let seen: Vec<ClientId> = store.ledger().seen_since(since);
        let mut touch =
            tx.prepare_cached("UPDATE crudp_clients SET seen = ?2 WHERE client = ?1")?;
        for client in seen {
            touch.execute(params![sql(client.0), now])?;
        }
        drop(touch);
        let idle = now - i64::try_from(limits.idle.as_secs()).unwrap_or(i64::MAX / 2);
        let gone = now - i64::try_from(limits.ownership_time().as_secs()).unwrap_or(i64::MAX / 2);
        tx.execute(
            "DELETE FROM crudp_outcomes WHERE client IN (SELECT client FROM crudp_clients WHERE seen < ?1)",
            [idle],
        )?;
        tx.execute("DELETE FROM crudp_clients WHERE seen < ?1", [gone])?;
    }
    tx.commit()
}

/// Writes the outcome of a packet and advances its client's mark, inside a transaction.
fn write_outcome(
    tx: &Connection,
    client: ClientId,
    seq: u64,
    outcome: &Outcome,
    max_bytes: usize,
) -> rusqlite::Result<()> {
    if outcome_bytes(outcome) <= max_bytes {
        let blob = crate::dispatch::encode(outcome).expect("an outcome always encodes");
        tx.execute(
            "INSERT OR REPLACE INTO crudp_outcomes (client, seq, outcome) VALUES (?1, ?2, ?3)",
            params![sql(client.0), sql(seq), blob],
        )?;
    }
    tx.execute(
        "UPDATE crudp_clients SET mark = MAX(mark, ?2), seen = ?3 WHERE client = ?1",
        params![sql(client.0), sql(seq), unix_now()],
    )?;
    Ok(())
}

/// Drops the outcomes of `client` older than the `keep` up to `seq`, as a flush does for the
/// outcomes it writes: a client whose calls all commit in transactions keeps no more.
fn trim_outcomes(tx: &Connection, client: ClientId, seq: u64, keep: usize) -> rusqlite::Result<()> {
    let keep = keep as u64;
    if seq > keep {
        tx.prepare_cached("DELETE FROM crudp_outcomes WHERE client = ?1 AND seq <= ?2")?
            .execute(params![sql(client.0), sql(seq - keep)])?;
    }
    Ok(())
}

fn read_client(db: &Connection, client: ClientId) -> rusqlite::Result<Option<Saved>> {
    db.query_row(
        "SELECT owner, mark FROM crudp_clients WHERE client = ?1",
        [sql(client.0)],
        |row| {
            Ok(Saved {
                owner: Arc::from(row.get::<_, String>(0)?),
                mark: row.get::<_, i64>(1)? as u64,
            })
        },
    )
    .optional()
}

impl OutcomeStore for SqliteOutcomes {
    fn ran(&self, client: ClientId, seq: u64, outcome: &Outcome) {
        // No sweep: this is on every packet's path.
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ran(client, seq, outcome);
    }

    fn claim<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        self.claim_at(client, user, user)
    }

    fn claim_at<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
        rate: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            if let Some(claim) = self.ledger().known_claim(client, user, Instant::now()) {
                return Ok(claim);
            }
            let this = self.clone();
            let (user, rate) = (user.to_owned(), rate.to_owned());
            blocking(move || {
                let db = lock(&this.inner.db);
                let now = Instant::now();
                if let Some(saved) = read_client(&db, client).map_err(unavailable)? {
                    let mut ledger = this.ledger();
                    ledger.load(client, saved, now);
                    return Ok(ledger
                        .known_claim(client, &user, now)
                        .unwrap_or(Claim::Foreign));
                }
                let owned: i64 = db
                    .query_row(
                        "SELECT COUNT(*) FROM crudp_clients WHERE owner = ?1",
                        [&user],
                        |row| row.get(0),
                    )
                    .map_err(unavailable)?;
                let owned = usize::try_from(owned).unwrap_or(usize::MAX);
                if let Err(limit) = this.ledger().may_add(&rate, owned, now) {
                    return Ok(Claim::Refused(limit));
                }
                // Written before it is granted, and known to the ledger only once written.
                db.execute(
                    "INSERT INTO crudp_clients (client, owner, mark, seen) VALUES (?1, ?2, 0, ?3)",
                    params![sql(client.0), &user, unix_now()],
                )
                .map_err(unavailable)?;
                let saved = Saved {
                    owner: Arc::from(user.as_str()),
                    mark: 0,
                };
                this.ledger().load(client, saved, now);
                let claim = Claim::Granted;
                Ok(claim)
            })
            .await
        })
    }

    fn begin(&self, client: ClientId, seq: u64) -> BoxFuture<'_, Result<Begin, StoreError>> {
        Box::pin(async move {
            let mut answers = self
                .begin_batch(client, std::slice::from_ref(&seq), 0)
                .await?;
            Ok(answers.pop().unwrap_or(Begin::Expired))
        })
    }

    fn finish<'a>(
        &'a self,
        client: ClientId,
        seq: u64,
        lease: Lease,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.finish_batch(client, lease, &[(seq, outcome)]).await })
    }

    fn begin_batch<'a>(
        &'a self,
        client: ClientId,
        seqs: &'a [u64],
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<Begin>, StoreError>> {
        Box::pin(async move {
            if self.inner.failing.load(Ordering::Acquire) {
                // Outcomes wait to be written; let them be written before more run.
                self.flush_now().await?;
            }
            let now = Instant::now();
            let begun = match self.ledger().begin_batch(client, seqs, after, now) {
                Err(StoreError::UnknownClient(_)) => None,
                other => Some(other?),
            };
            let mut answers = match begun {
                Some(answers) => answers,
                None => {
                    self.load(client).await?;
                    self.ledger().begin_batch(client, seqs, after, now)?
                }
            };
            // Outcomes no longer in memory may still be on disk.
            let lease = answers.iter().find_map(|answer| match answer {
                Begin::Run(lease) => Some(*lease),
                _ => None,
            });
            let expired: Vec<u64> = answers
                .iter()
                .zip(seqs)
                .filter(|(answer, _)| matches!(answer, Begin::Expired))
                .map(|(_, &seq)| seq)
                .collect();
            if expired.is_empty() {
                return Ok(answers);
            }
            // Not answered (the file failed, or this future was dropped meanwhile), the
            // packets reserved with them do not run: their reservation ends, or the client
            // would be `Busy` for good.
            struct Unanswered<'a> {
                store: &'a SqliteOutcomes,
                client: ClientId,
                lease: Option<Lease>,
            }
            impl Drop for Unanswered<'_> {
                fn drop(&mut self) {
                    if let Some(lease) = self.lease.take() {
                        let _ = self.store.ledger().finish_batch(
                            self.client,
                            lease,
                            &[],
                            Instant::now(),
                        );
                    }
                }
            }
            let mut unanswered = Unanswered {
                store: self,
                client,
                lease,
            };
            // All looked for at once: one trip to the file however many there are.
            let stored = self.stored_outcomes(client, expired).await?;
            unanswered.lease = None;
            let mut stored = stored.into_iter();
            for answer in &mut answers {
                if matches!(answer, Begin::Expired)
                    && let Some(found) = stored.next()
                {
                    *answer = found;
                }
            }
            Ok(answers)
        })
    }

    fn finish_batch<'a>(
        &'a self,
        client: ClientId,
        lease: Lease,
        outcomes: &'a [(u64, &'a Outcome)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.finish_now(client, lease, outcomes)))
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.flush_now())
    }

    fn abandon(&self, client: ClientId, lease: Lease, ran: &[(u64, &Outcome)]) {
        // Written with the next flush; a reservation already gone has nothing to end.
        let _ = self.finish_now(client, lease, ran);
    }

    fn limits(&self) -> &OutcomeLimits {
        &self.inner.limits
    }
}

/// A handler's result once its transaction committed; if the database failed, the call is
/// retried later.
pub(super) fn committed_or_retried<T, E: From<RetryLater>>(
    ctx: &Context,
    done: rusqlite::Result<Result<T, E>>,
) -> Result<T, E> {
    done.unwrap_or_else(|e| {
        Err(ctx
            .retry_later(format!("the database could not commit: {e}"))
            .into())
    })
}

pub(super) fn lock(db: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    db.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `work` on Tokio's blocking threads; a panic in it is a panic here.
pub(super) async fn blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// SQLite integers are `i64`; IDs keep their bits.
pub(super) fn sql(value: u64) -> i64 {
    value as i64
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::User;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("crudp-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("outcomes.db")
    }

    /// The first column of the rows `query` selects.
    async fn column<T: rusqlite::types::FromSql + Send + 'static>(
        store: &SqliteOutcomes,
        query: &'static str,
    ) -> Vec<T> {
        store
            .connection(move |db| {
                let mut query = db.prepare(query).unwrap();
                query
                    .query_map([], |row| row.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
            })
            .await
            .unwrap()
    }

    async fn reserve(store: &SqliteOutcomes, client: ClientId, seq: u64) -> Lease {
        match store.begin(client, seq).await.unwrap() {
            Begin::Run(lease) => lease,
            other => panic!("packet {seq} should run, not {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_file_of_an_earlier_version_opens_with_no_client_left_stalled() {
        let path = temp("before-upgrade");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE crudp_clients (client INTEGER PRIMARY KEY, owner TEXT NOT NULL,
                 mark INTEGER NOT NULL, stalled INTEGER, seen INTEGER NOT NULL);
             INSERT INTO crudp_clients VALUES (3, 'ann', 4, 2, 0);",
        )
        .unwrap();
        drop(db);
        let store = SqliteOutcomes::open(&path).unwrap();
        let stalled: Vec<Option<i64>> = column(&store, "SELECT stalled FROM crudp_clients").await;
        assert_eq!(stalled, [None]);
        // Its client goes on past its mark, in files of both versions.
        assert_eq!(store.claim(ClientId(3), "ann").await, Ok(Claim::Granted));
        assert_eq!(store.begin(ClientId(3), 4).await, Ok(Begin::Expired));
        reserve(&store, ClientId(3), 5).await;
        let fresh = SqliteOutcomes::open(temp("after-upgrade")).unwrap();
        assert_eq!(fresh.claim(ClientId(3), "ann").await, Ok(Claim::Granted));
        reserve(&fresh, ClientId(3), 1).await;
    }

    #[tokio::test]
    async fn a_batch_abandoned_keeps_what_ran_across_a_reopening_and_frees_its_client() {
        let path = temp("abandoned");
        let store = SqliteOutcomes::open(&path).unwrap();
        let client = ClientId(3);
        store.claim(client, "ann").await.unwrap();
        let begun = store.begin_batch(client, &[1, 2], 0).await.unwrap();
        let [Begin::Run(lease), Begin::Run(_)] = begun[..] else {
            panic!("1 and 2 run: {begun:?}");
        };
        // Call 1 ran; the batch's task was dropped while call 2 ran.
        let one = Outcome::Ok(vec![1].into());
        store.ran(client, 1, &one);
        store.abandon(client, lease, &[(1, &one)]);
        let again = store.begin_batch(client, &[1, 2], 0).await.unwrap();
        assert!(
            matches!(again[..], [Begin::Done(ref done), Begin::Run(_)] if *done == one),
            "{again:?}"
        );
        store.flush().await.unwrap();
        drop(store);
        let store = SqliteOutcomes::open(&path).unwrap();
        store.claim(client, "ann").await.unwrap();
        let begun = store.begin_batch(client, &[1, 2], 0).await.unwrap();
        assert!(
            matches!(begun[..], [Begin::Done(ref done), Begin::Run(_)] if *done == one),
            "{begun:?}"
        );
    }

    #[tokio::test]
    async fn a_batch_dropped_while_its_outcomes_are_read_from_the_file_frees_its_client() {
        use futures_util::FutureExt;
        let store = SqliteOutcomes::open(temp("dropped-while-read")).unwrap();
        let client = ClientId(3);
        store.claim(client, "ann").await.unwrap();
        let lease = reserve(&store, client, 1).await;
        let one = Outcome::Ok(vec![1].into());
        store.finish(client, 1, lease, &one).await.unwrap();
        store.flush().await.unwrap();
        // Call 1's outcome is on disk only: a batch re-sending it with call 2 reserves 2,
        // then reads 1 from the file, and is dropped meanwhile.
        store.ledger().drop_outcomes_of(client);
        let held = lock(&store.inner.db);
        assert!(
            store
                .begin_batch(client, &[1, 2], 0)
                .now_or_never()
                .is_none()
        );
        drop(held);
        let begun = store.begin_batch(client, &[1, 2], 0).await.unwrap();
        assert!(
            matches!(begun[..], [Begin::Done(ref done), Begin::Run(_)] if *done == one),
            "{begun:?}"
        );
    }

    #[tokio::test]
    async fn a_transaction_commits_the_work_with_its_outcome_or_rolls_the_work_back() {
        let path = temp("transaction");
        let store = SqliteOutcomes::open(&path).unwrap();
        store
            .connection(|db| db.execute_batch("CREATE TABLE notes (text TEXT NOT NULL)"))
            .await
            .unwrap();
        let client = ClientId(3);
        assert_eq!(store.claim(client, "ann").await, Ok(Claim::Granted));
        let ctx = Context::local(User::new("ann", "member"), client);
        let insert = |text: &'static str, fail: bool| {
            move |db: &Connection| -> Result<u32, String> {
                db.execute("INSERT INTO notes (text) VALUES (?1)", [text])
                    .map_err(|e| e.to_string())?;
                if fail {
                    Err(format!("{text} refused"))
                } else {
                    Ok(7)
                }
            }
        };

        let lease = reserve(&store, client, 1).await;
        let kept = store
            .transaction(&ctx.for_seq(1), insert("kept", false))
            .await;
        assert_eq!(kept, Ok(7));
        let lease2 = lease;
        store
            .finish(client, 1, lease2, &Outcome::Ok(vec![7].into()))
            .await
            .unwrap();

        reserve(&store, client, 2).await;
        let refused = store
            .transaction(&ctx.for_seq(2), insert("dropped", true))
            .await;
        assert_eq!(refused, Err("dropped refused".to_owned()));

        // Whatever the process does next (it is gone, say), the file has both outcomes and
        // only the first note.
        drop(store);
        let store = SqliteOutcomes::open(&path).unwrap();
        let notes: Vec<String> = column(&store, "SELECT text FROM notes").await;
        assert_eq!(notes, ["kept"]);
        assert_eq!(
            store.begin(client, 1).await,
            Ok(Begin::Done(Outcome::Ok(vec![7].into())))
        );
        let refused = postcard::to_stdvec(&"dropped refused").unwrap();
        assert_eq!(
            store.begin(client, 2).await,
            Ok(Begin::Done(Outcome::AppError(refused.into())))
        );
        assert!(matches!(store.begin(client, 3).await, Ok(Begin::Run(_))));
        assert_eq!(store.claim(client, "mallory").await, Ok(Claim::Foreign));
    }

    #[tokio::test]
    #[expect(
        clippy::await_holding_lock,
        reason = "the file is held on purpose, while the call is answered"
    )]
    async fn a_transaction_whose_call_timed_out_while_it_waited_for_the_file_does_nothing() {
        let store = SqliteOutcomes::open(temp("answered-meanwhile")).unwrap();
        store
            .connection(|db| db.execute_batch("CREATE TABLE notes (text TEXT NOT NULL)"))
            .await
            .unwrap();
        let client = ClientId(3);
        store.claim(client, "ann").await.unwrap();
        let ctx = Context::local(User::new("ann", "member"), client);
        let note = |ctx: Context, text: &'static str| {
            let store = store.clone();
            async move {
                store
                    .transaction(&ctx, move |db| {
                        db.execute("INSERT INTO notes (text) VALUES (?1)", [text])
                            .map_err(|e| e.to_string())
                    })
                    .await
            }
        };
        let stopped = Outcome::Rejected {
            code: crate::protocol::RejectCode::Timeout,
            message: "ran out of time".into(),
        };
        let begun = store.begin_batch(client, &[1, 2], 0).await.unwrap();
        let [Begin::Run(lease), Begin::Run(_)] = begun[..] else {
            panic!("1 and 2 run: {begun:?}");
        };
        // Another transaction holds the file; call 1's waits for it, past its handler's time:
        // the call is answered as stopped while its batch goes on...
        let held = lock(&store.inner.db);
        let late = tokio::spawn(note(ctx.for_seq(1), "late"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.ran(client, 1, &stopped);
        drop(held);
        assert!(late.await.unwrap().is_err());
        // The batch's next call runs and the batch finishes.
        assert_eq!(note(ctx.for_seq(2), "two").await, Ok(1));
        let two = Outcome::Ok(vec![1].into());
        store
            .finish_batch(client, lease, &[(1, &stopped), (2, &two)])
            .await
            .unwrap();
        // A call whose batch finished, its one call stopped, while its transaction waited.
        let lease = reserve(&store, client, 3).await;
        let held = lock(&store.inner.db);
        let late = tokio::spawn(note(ctx.for_seq(3), "later"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // As the server does: the outcome of each packet that ran, then its batch's.
        store.ran(client, 3, &stopped);
        store.finish(client, 3, lease, &stopped).await.unwrap();
        // Budgets may drop kept outcomes meanwhile; that it timed out is kept apart.
        store.ledger().drop_outcomes_of(client);
        drop(held);
        assert!(late.await.unwrap().is_err());
        // A call's two transactions at once both run; the first records the outcome.
        reserve(&store, client, 4).await;
        let (a, b) = tokio::join!(note(ctx.for_seq(4), "a"), note(ctx.for_seq(4), "b"));
        assert_eq!((a, b), (Ok(1), Ok(1)));
        let notes: Vec<String> = column(&store, "SELECT text FROM notes ORDER BY text").await;
        assert_eq!(notes, ["a", "b", "two"], "only the calls not stopped wrote");
    }

    #[tokio::test]
    async fn a_batch_whose_kept_outcome_cannot_be_read_leaves_no_reservation_behind() {
        let path = temp("unreadable");
        let store = SqliteOutcomes::open(&path).unwrap();
        let client = ClientId(5);
        assert_eq!(store.claim(client, "ann").await, Ok(Claim::Granted));
        let lease = reserve(&store, client, 1).await;
        let one = Outcome::Ok(vec![1].into());
        store.finish(client, 1, lease, &one).await.unwrap();
        store.flush().await.unwrap();
        // After a restart, packet 1's outcome is in the file only, which cannot be read for a
        // while.
        drop(store);
        let store = SqliteOutcomes::open(&path).unwrap();
        let rename = |from: &'static str, to: &'static str| {
            move |db: &Connection| db.execute_batch(&format!("ALTER TABLE {from} RENAME TO {to}"))
        };
        store
            .connection(rename("crudp_outcomes", "elsewhere"))
            .await
            .unwrap();
        assert!(store.begin_batch(client, &[1, 2], 0).await.is_err());
        store
            .connection(rename("elsewhere", "crudp_outcomes"))
            .await
            .unwrap();
        // Packet 2, reserved with it, did not run: it runs now, not `Busy` for good.
        let answers = store.begin_batch(client, &[1, 2], 0).await.unwrap();
        assert_eq!(answers[0], Begin::Done(one));
        assert!(matches!(answers[1], Begin::Run(_)), "{answers:?}");
    }

    #[tokio::test]
    async fn a_client_whose_calls_all_commit_in_transactions_keeps_only_its_latest_outcomes() {
        let path = temp("trim");
        let limits = OutcomeLimits::default().outcomes_per_client(3);
        let store = SqliteOutcomes::open_with(&path, limits).unwrap();
        let client = ClientId(4);
        assert_eq!(store.claim(client, "ann").await, Ok(Claim::Granted));
        let ctx = Context::local(User::new("ann", "member"), client);
        for seq in 1..=10 {
            let lease = reserve(&store, client, seq).await;
            let done = store
                .transaction(&ctx.for_seq(seq), move |_| Ok::<_, String>(seq))
                .await;
            assert_eq!(done, Ok(seq));
            let outcome = Outcome::Ok(postcard::to_stdvec(&seq).unwrap().into());
            store.finish(client, seq, lease, &outcome).await.unwrap();
        }
        let kept: Vec<i64> = column(&store, "SELECT seq FROM crudp_outcomes ORDER BY seq").await;
        assert_eq!(kept, [8, 9, 10]);
    }

    #[tokio::test]
    async fn a_transaction_commits_the_outcomes_of_the_packets_of_its_batch_that_ran_before_it() {
        let path = temp("earlier");
        let store = SqliteOutcomes::open(&path).unwrap();
        let note = |db: &Connection| -> Result<u32, String> {
            db.execute_batch("CREATE TABLE IF NOT EXISTS notes (text TEXT NOT NULL)")
                .map_err(|e| e.to_string())?;
            Ok(2)
        };
        let read = Outcome::Ok(vec![1].into());
        let noted = Outcome::Ok(postcard::to_stdvec(&2u32).unwrap().into());
        // Packet 1 (a read, or a write elsewhere) ran; packet 2 commits its own outcome.
        let batch = |client: ClientId| {
            let store = store.clone();
            let read = read.clone();
            async move {
                assert_eq!(store.claim(client, "ann").await, Ok(Claim::Granted));
                let begun = store.begin_batch(client, &[1, 2, 3], 0).await.unwrap();
                let Some(Begin::Run(lease)) = begun.first().cloned() else {
                    panic!("packets 1 to 3 should run, not {begun:?}");
                };
                store.ran(client, 1, &read);
                let ctx = Context::local(User::new("ann", "member"), client);
                assert_eq!(store.transaction(&ctx.for_seq(2), note).await, Ok(2));
                lease
            }
        };
        // Finished as the server finishes a batch: packet 1's outcome is kept, not passed by.
        let finished = ClientId(5);
        let lease = batch(finished).await;
        store
            .finish_batch(finished, lease, &[(1, &read), (2, &noted)])
            .await
            .unwrap();
        assert_eq!(
            store.begin(finished, 1).await,
            Ok(Begin::Done(read.clone()))
        );
        // Or the process dies before the batch is finished: the file has both outcomes.
        let killed = ClientId(6);
        batch(killed).await;
        drop(store);
        let store = SqliteOutcomes::open(&path).unwrap();
        assert_eq!(store.begin(killed, 1).await, Ok(Begin::Done(read)));
        assert_eq!(store.begin(killed, 2).await, Ok(Begin::Done(noted)));
        assert!(matches!(store.begin(killed, 3).await, Ok(Begin::Run(_))));
    }
}
