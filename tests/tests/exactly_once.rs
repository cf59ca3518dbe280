//! Exactly-once against a real server: re-sent batches as large as a client sends, a store
//! that fails to record, a flood of client IDs, and a SQLite store across a restart.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crudp::{
    ClientId, Outcome,
    server::{
        Begin, BoxFuture, Claim, Lease, MemoryOutcomes, OutcomeLimits, OutcomeStore,
        SqliteOutcomes, StoreError,
    },
};
use crudp_tests::*;
use futures_util::{StreamExt, stream};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("crudp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("outcomes.db")
}

fn all_ok(results: &crudp::protocol::Results) -> bool {
    results
        .results
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Ok(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_of_a_thousand_calls_gets_a_thousand_kept_outcomes() {
    let server = Server::start().await;
    let body = batch_of(ClientId(41), creates("milk", 1..=1000));
    let (status, first) = call_raw(&server.url(), "ann", body.clone()).await;
    assert_eq!(status, 200);
    let first = first.unwrap();
    assert_eq!(first.results.len(), 1000);
    assert!(all_ok(&first));
    // The results were lost on the way: the client sends the same batch again.
    let (_, again) = call_raw(&server.url(), "ann", body).await;
    assert_eq!(again.unwrap(), first, "every outcome is answered again");
    assert_eq!(server.executions(), 1000, "nothing ran twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_store_keeps_is_refused_and_the_client_learns_the_limit() {
    let server = Server::start_with(|b| {
        b.outcome_store(MemoryOutcomes::new(
            OutcomeLimits::default().outcomes_per_client(100),
        ))
    })
    .await;
    let (status, _) = call_raw(
        &server.url(),
        "ann",
        batch_of(ClientId(5), creates("x", 1..=101)),
    )
    .await;
    assert_eq!(
        status, 400,
        "a batch the store could not remember whole is refused"
    );
    // A client learns the limit with its token and splits its batches to fit.
    let client = server.client_as("ann", "member");
    let todos = TodosClient::new(&client);
    let calls = (0..250).map(|n| todos.create(format!("split {n}")));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(server.executions(), 250);
    assert!(
        server.requests() >= 3,
        "250 calls leave as 3 batches or more"
    );
}

/// A store whose `finish` (and `flush`) fail a given number of times before they work.
struct Flaky {
    inner: MemoryOutcomes,
    failures: AtomicUsize,
    flush_failures: AtomicUsize,
    finishes: Arc<AtomicUsize>,
}

impl Flaky {
    /// A store whose `finish` fails `finishes` times and `flush` fails `flushes` times.
    fn failing(finishes: usize, flushes: usize) -> Self {
        Self {
            inner: MemoryOutcomes::default(),
            failures: AtomicUsize::new(finishes),
            flush_failures: AtomicUsize::new(flushes),
            finishes: Arc::default(),
        }
    }
}

/// Takes one of `left`, if any is left.
fn fails(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl OutcomeStore for Flaky {
    fn claim<'a>(
        &'a self,
        client: ClientId,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        self.inner.claim(client, user)
    }

    fn begin(&self, client: ClientId, seq: u64) -> BoxFuture<'_, Result<Begin, StoreError>> {
        self.inner.begin(client, seq)
    }

    fn finish<'a>(
        &'a self,
        client: ClientId,
        seq: u64,
        lease: Lease,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.finishes.fetch_add(1, Ordering::SeqCst);
        if fails(&self.failures) {
            return Box::pin(std::future::ready(Err(StoreError::Unavailable(
                "the disk is full".into(),
            ))));
        }
        self.inner.finish(client, seq, lease, outcome)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        if fails(&self.flush_failures) {
            return Box::pin(std::future::ready(Err(StoreError::Unavailable(
                "the disk is slow".into(),
            ))));
        }
        self.inner.flush()
    }

    fn limits(&self) -> &OutcomeLimits {
        self.inner.limits()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_fails_to_be_recorded_never_lets_its_call_run_again() {
    let store = Flaky::failing(3, 0);
    let finishes = Arc::clone(&store.finishes);
    let server = Server::start_with(|b| b.outcome_store(store)).await;
    let body = batch_of(ClientId(9), creates("tea", [1]));
    let (_, first) = call_raw(&server.url(), "ann", body.clone()).await;
    assert!(
        matches!(
            first.unwrap().results[0].outcome,
            Outcome::Unavailable { .. }
        ),
        "a call whose outcome is not recorded is not answered yet"
    );
    assert_eq!(server.executions(), 1);
    // Re-sent at once: still not recorded, so neither run nor answered.
    let (_, again) = call_raw(&server.url(), "ann", body.clone()).await;
    assert!(matches!(
        again.unwrap().results[0].outcome,
        Outcome::Unavailable { .. }
    ));
    // The server keeps recording it in the background; then its outcome is answered.
    let mut answered = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, results) = call_raw(&server.url(), "ann", body.clone()).await;
        let results = results.unwrap();
        if all_ok(&results) {
            answered = Some(results);
            break;
        }
    }
    let answered = answered.expect("the outcome, once recorded");
    let Outcome::Ok(todo) = &answered.results[0].outcome else {
        unreachable!()
    };
    let todo: Todo = postcard::from_bytes(todo).unwrap();
    assert_eq!(todo.title, "tea 1");
    assert_eq!(server.executions(), 1, "the call ran once");
    assert!(
        finishes.load(Ordering::SeqCst) >= 4,
        "three failed attempts, then one that worked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_waits_until_its_call_s_outcome_is_durable() {
    let store = Flaky::failing(0, 3);
    let server = Server::start_with(|b| b.outcome_store(store)).await;
    let url = server.url();
    let bob = ClientId(0xB0B);
    let token = server.token("bob", "member", bob).await;
    let spy = Spy::connect(format!("{url}/events?token={token}"), None).await;
    spy.wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;
    let broadcasts = |spy: &Spy| {
        spy.events()
            .iter()
            .filter(|e| e.event == "broadcast")
            .count()
    };
    // The call runs, but its outcome is not durable: not answered, and not heard of.
    let body = batch_of(ClientId(0xA11), creates("shout", [1]));
    let (_, first) = call_raw(&url, "ann", body).await;
    assert!(matches!(
        first.unwrap().results[0].outcome,
        Outcome::Unavailable { .. }
    ));
    assert_eq!(broadcasts(&spy), 0, "heard of before it was durable");
    // Once the store writes it (the server tries again in the background), Bob hears of
    // it, once.
    spy.wait_for("the broadcast", |e| {
        e.iter().any(|e| e.event == "broadcast")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(broadcasts(&spy), 1);
    assert_eq!(server.executions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_later_broadcasts_wait_for_those_whose_outcomes_were_not_durable() {
    let store = Flaky::failing(0, 1);
    let server = Server::start_with(|b| b.outcome_store(store)).await;
    let url = server.url();
    let token = server.token("bob", "member", ClientId(0xB0B)).await;
    let spy = Spy::connect(format!("{url}/events?token={token}"), None).await;
    spy.wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;
    // Ann's first call runs (a shout, broadcast to everyone), but its outcome is not durable: not answered yet, its broadcast
    // held while the server tries again in the background.
    let ann = ClientId(0xA11);
    let (_, first) = call_raw(&url, "ann", batch_of(ann, creates("shout first", [1]))).await;
    assert!(matches!(
        first.unwrap().results[0].outcome,
        Outcome::Unavailable { .. }
    ));
    // She sends it again with her next call at once: both answered, the second durable
    // before the first's broadcast went out.
    let mut both = creates("shout first", [1]);
    both.extend(creates("shout second", [2]));
    let (_, answered) = call_raw(&url, "ann", batch_of(ann, both)).await;
    assert!(all_ok(&answered.unwrap()));
    // Bob hears of them in the order they ran.
    let events = spy
        .wait_for("both broadcasts", |e| {
            e.iter().filter(|e| e.event == "broadcast").count() == 2
        })
        .await;
    let heard: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "broadcast")
        .map(|e| {
            if e.data.windows(5).any(|w| w == b"first") {
                "first"
            } else {
                "second"
            }
        })
        .collect();
    assert_eq!(heard, ["first", "second"]);
    assert_eq!(server.executions(), 2, "each ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_client_ids_moves_no_owner_and_runs_nothing_twice() {
    let server = Server::start().await;
    let url = server.url();
    let ann = ClientId(0xA11);
    // Ann's call runs, and its results go to her stream.
    let token = server.token("ann", "member", ann).await;
    let spy = Spy::connect(format!("{url}/events?token={token}"), None).await;
    let ready = spy
        .wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;
    let before = ready[0].id;
    let body = batch_of(ann, creates("ann's", [1]));
    let response = http_as("ann", "member")
        .post(format!("{url}/sync"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    spy.wait_for("ann's results", |e| e.iter().any(|e| e.event == "results"))
        .await;
    drop(spy);
    assert_eq!(token_status(&url, "mallory", ann).await, 403);

    // Mallory asks for tokens for 3,000 fresh client IDs.
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = stream::iter(0..3000u64)
        .map(|n| {
            let url = url.clone();
            async move { token_status(&url, "mallory", ClientId(1_000_000 + n)).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let granted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    eprintln!("of 3,000 new client IDs, {granted} were granted and {limited} refused with 429");
    assert_eq!(granted + limited, 3000, "only 200 and 429: {statuses:?}");
    // 600 at once, then 10 a second.
    let allowed = 600 + 10 * (started.elapsed().as_secs() as usize + 1);
    assert!(
        granted <= allowed,
        "one user makes at most 600 new IDs a minute, made {granted}"
    );

    // Ann's client is still hers alone, her call does not run again, and others still get IDs.
    assert_eq!(token_status(&url, "mallory", ann).await, 403);
    let (status, _) = call_raw(&url, "mallory", batch_of(ann, creates("stolen", [2]))).await;
    assert_eq!(status, 403);
    assert_eq!(token_status(&url, "ann", ann).await, 200);
    assert_eq!(token_status(&url, "bob", ClientId(0xB0B)).await, 200);
    let (_, again) = call_raw(&url, "ann", body).await;
    assert!(all_ok(&again.unwrap()));
    assert_eq!(server.executions(), 1, "ann's call ran once");

    // Mallory's own stream, replayed from before ann's call, carries nothing of ann's.
    let mine = ClientId(1_000_000);
    let token = server.token("mallory", "member", mine).await;
    let spy = Spy::connect(
        format!("{url}/events?token={token}&lastEventId={before}"),
        None,
    )
    .await;
    let events = spy
        .wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;
    assert!(
        events.iter().all(|e| e.event == "ready"),
        "nothing of another client is replayed: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_answers_from_disk_after_a_restart() {
    let path = temp_db("restart");
    let client = ClientId(77);
    let body = batch_of(client, creates("bread", 1..=2));
    let first = {
        let server =
            Server::start_with(|b| b.outcome_store(SqliteOutcomes::open(&path).unwrap())).await;
        let (_, results) = call_raw(&server.url(), "ann", body.clone()).await;
        assert_eq!(server.executions(), 2);
        results.unwrap()
    };
    assert!(all_ok(&first));

    let server =
        Server::start_with(|b| b.outcome_store(SqliteOutcomes::open(&path).unwrap())).await;
    let (_, again) = call_raw(&server.url(), "ann", body).await;
    assert_eq!(
        again.unwrap(),
        first,
        "the outcomes kept on disk are answered again"
    );
    assert_eq!(
        server.executions(),
        0,
        "nothing ran again after the restart"
    );
    assert_eq!(
        token_status(&server.url(), "mallory", client).await,
        403,
        "the owner is kept"
    );
    let (_, next) = call_raw(
        &server.url(),
        "ann",
        batch_of(client, creates("bread", [3])),
    )
    .await;
    assert!(all_ok(&next.unwrap()), "later calls run");
    assert_eq!(server.executions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_wait_until_the_sqlite_file_takes_their_outcomes() {
    let path = temp_db("busy");
    let server =
        Server::start_with(|b| b.outcome_store(SqliteOutcomes::open(&path).unwrap())).await;
    let client = ClientId(12);
    assert_eq!(token_status(&server.url(), "ann", client).await, 200);
    // Another process holds the file's write lock for a while.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let body = batch_of(client, creates("jam", [1]));
    let (_, first) = call_raw(&server.url(), "ann", body.clone()).await;
    assert!(
        matches!(
            first.unwrap().results[0].outcome,
            Outcome::Unavailable { .. }
        ),
        "not answered before its outcome is durable"
    );
    assert_eq!(server.executions(), 1, "it ran");
    other.execute_batch("COMMIT").unwrap();
    drop(other);
    let (_, again) = call_raw(&server.url(), "ann", body).await;
    let again = again.unwrap();
    assert!(
        all_ok(&again),
        "answered once durable: {:?}",
        again.results[0].outcome
    );
    assert_eq!(server.executions(), 1, "and never run twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_request_is_dropped_mid_run_still_finishes_once() {
    let server = Server::start().await;
    // One call alone runs on its request's own task: the request goes away while it runs.
    let body = batch_of(ClientId(42), creates("gated", 1..=1));
    let url = server.url();
    let request = tokio::spawn({
        let body = body.clone();
        async move { call_raw(&url, "ann", body).await }
    });
    eventually("the call reaches its handler", || {
        server.store.at_gate.load(Ordering::SeqCst) == 1
    })
    .await;
    request.abort();
    assert!(request.await.is_err(), "the request was dropped");
    server.store.gate.add_permits(1);
    eventually("the call finishes without its request", || {
        server.executions() == 1
    })
    .await;
    // Sent again, it is answered with the outcome kept (once it is recorded), not run again.
    let mut answered = false;
    for _ in 0..100 {
        let (status, again) = call_raw(&server.url(), "ann", body.clone()).await;
        if status == 200 && again.as_ref().is_some_and(all_ok) {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "the re-sent call got its kept outcome");
    assert_eq!(server.executions(), 1, "nothing ran twice");
}

fn unavailable(results: &crudp::protocol::Results) -> Vec<String> {
    results
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Unavailable { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_after_the_call_it_follows_and_never_waits_for_one_given_up() {
    let server = Server::start().await;
    let (url, client) = (server.url(), ClientId(31));
    // Calls 1 and 2 were sent and have not run (their batch waits elsewhere, say): 3, sent
    // after them, waits.
    let (status, results) = call_raw(&url, "ann", batch_after(client, 2, creates("t", [3]))).await;
    assert_eq!(status, 200);
    let waiting = unavailable(&results.unwrap());
    assert!(
        waiting[0].contains("waiting for call 2 of this client"),
        "{waiting:?}"
    );
    assert_eq!(server.executions(), 0);
    // They come, and run; then 3 runs after them.
    let (_, results) = call_raw(&url, "ann", batch_of(client, creates("t", 1..=2))).await;
    assert!(all_ok(&results.unwrap()));
    let (_, results) = call_raw(&url, "ann", batch_after(client, 2, creates("t", [3]))).await;
    assert!(all_ok(&results.unwrap()));

    // 4 could not run (its handler asked to be retried later), and its client gave up on it:
    // 5, sent after, no longer waits for it.
    let (_, results) = call_raw(&url, "ann", batch_of(client, creates("busy", [4]))).await;
    assert_eq!(unavailable(&results.unwrap()).len(), 1);
    let (_, results) = call_raw(&url, "ann", batch_of(client, creates("t", [5]))).await;
    assert!(all_ok(&results.unwrap()));
    // A copy of 4 still on its way never runs now: its client was told it failed.
    let (_, results) = call_raw(&url, "ann", batch_of(client, creates("busy", [4]))).await;
    assert_eq!(results.unwrap().results[0].outcome, Outcome::Expired);
    assert_eq!(server.executions(), 4);
}
