//! One user cannot starve the others: its batches get a share of the queue and of the workers
//! however many client IDs it makes, and a handler that hangs is stopped.

#![cfg(not(target_arch = "wasm32"))]

use std::{sync::atomic::Ordering, time::Duration};

use crudp::{CallError, ClientId, RejectCode};
use crudp_tests::*;

/// `POST /sync` of one gated create (it waits at the store's gate) from `client` of `user`.
async fn sync_gated(server: &Server, user: &str, client: u64) -> reqwest::Response {
    http_as(user, "member")
        .post(format!("{}/sync", server.url()))
        .body(batch_of(ClientId(client), creates("gated", [1])))
        .send()
        .await
        .unwrap()
}

/// A liveness guard, not a speed check: generous, so that only a call that never comes fails.
async fn within_a_minute<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("{what} never came"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_hanging_handlers_holds_only_its_share_of_workers_and_queue() {
    let server = Server::start_with(|b| {
        b.workers(4)
            .workers_per_user(2)
            .queue_per_user(3)
            .handler_timeout(Duration::from_secs(600))
    })
    .await;
    // The hog's batches, each from a client ID of its own: 2 run (and hang), 3 wait.
    for client in 1..=5 {
        assert_eq!(sync_gated(&server, "hog", client).await.status(), 202);
    }
    eventually("two of the hog's handlers to hang", || {
        server.store.at_gate.load(Ordering::SeqCst) == 2
    })
    .await;
    let refused = sync_gated(&server, "hog", 6).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let message = refused.text().await.unwrap();
    assert!(message.contains("share of the queue"), "{message}");

    // Another user is served meanwhile, by the workers the hog may not take.
    let ann = server.client_as("ann", "member");
    let todo = within_a_minute(
        "ann's answer",
        TodosClient::new(&ann).create("hello".into()),
    )
    .await;
    assert_eq!(todo.unwrap().title, "hello");
    assert_eq!(
        server.store.at_gate.load(Ordering::SeqCst),
        2,
        "still only two of the hog's handlers ran"
    );

    // Released, the hog's batches all run.
    server.store.gate.add_permits(5);
    eventually("the hog's 5 batches and ann's call", || {
        server.executions() == 6
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_busy_with_a_long_batch_leaves_the_next_batch_to_an_idle_one() {
    let server = Server::start_with(|b| {
        b.workers(2)
            .workers_per_user(1)
            .handler_timeout(Duration::from_secs(600))
    })
    .await;
    // The workers start, run a batch, and both wait for work.
    let bob = server.client_as("bob", "member");
    let todos = TodosClient::new(&bob);
    let warm = within_a_minute("bob's first answer", todos.create("first".into())).await;
    assert_eq!(warm.unwrap().title, "first");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One worker takes a batch that hangs; the other is woken for a batch of the same user,
    // which must wait for the user's share, and goes back to waiting.
    assert_eq!(sync_gated(&server, "hog", 1).await.status(), 202);
    eventually("the hog's handler to hang", || {
        server.store.at_gate.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(sync_gated(&server, "hog", 2).await.status(), 202);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another user's batch goes to the idle worker, not to the busy one.
    let todo = within_a_minute("bob's answer", todos.create("meanwhile".into())).await;
    assert_eq!(todo.unwrap().title, "meanwhile");
    assert_eq!(server.store.at_gate.load(Ordering::SeqCst), 1);
    server.store.gate.add_permits(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_hangs_is_stopped_and_its_call_is_not_run_again() {
    let server = Server::start_with(|b| b.handler_timeout(Duration::from_millis(300))).await;
    let client = server.client_as("ann", "member");
    let todos = TodosClient::new(&client);
    let stopped = within_a_minute("the timeout", todos.create("gated forever".into())).await;
    match stopped {
        Err(CallError::Rejected {
            code: RejectCode::Timeout,
            message,
        }) => assert!(message.contains("Todos::create"), "{message}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The client's next calls run; the stopped one never ran to its end, nor again.
    assert_eq!(todos.create("next".into()).await.unwrap().title, "next");
    server.store.gate.add_permits(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.executions(), 1, "only `next` ran");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Serves `api` on a new listener of the current runtime; its URL.
async fn serve_again(api: crudp::server::Crudp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/crudp", listener.local_addr().unwrap());
    let app = axum::Router::new().nest("/crudp", api.router());
    tokio::spawn(async move { crudp::server::serve(listener, app).await.unwrap() });
    url
}

#[test]
fn a_batch_cut_short_with_its_runtime_leaves_its_client_free_on_the_next() {
    let first = runtime();
    let server = first.block_on(Server::start());
    // Call 1 runs to its end, call 2 waits at the gate when the runtime goes.
    let batch = || {
        let mut calls = creates("ran", [1]);
        calls.extend(creates("gated", [2]));
        batch_of(ClientId(7), calls)
    };
    first.block_on(async {
        let url = server.url();
        tokio::spawn(async move { call_raw(&url, "ann", batch()).await });
        eventually("the call at the gate", || {
            server.store.at_gate.load(Ordering::SeqCst) == 1
        })
        .await;
    });
    drop(first);
    server.store.gate.add_permits(1);
    let api = server.api.clone();
    runtime().block_on(async move {
        let url = serve_again(api).await;
        // Sent again, call 2 runs (its first run never finished), instead of waiting for
        // ever behind a reservation nobody holds; call 1 is answered as it was, not run again.
        let (status, results) =
            within_a_minute("the calls again", call_raw(&url, "ann", batch())).await;
        assert_eq!(status, 200);
        let results = results.unwrap().results;
        assert!(
            results
                .iter()
                .all(|r| matches!(r.outcome, crudp::Outcome::Ok(_))),
            "{results:?}"
        );
    });
    assert_eq!(server.executions(), 2, "each call ran to its end once");
}

#[test]
fn a_server_served_again_on_a_new_runtime_runs_its_queue_there() {
    let first = runtime();
    let server = first.block_on(Server::start());
    // Through `POST /sync`: batches queued for the workers.
    first.block_on(async {
        let todos = TodosClient::new(&server.client_as("ann", "member"));
        let made = within_a_minute("the call", todos.create("first".into())).await;
        assert_eq!(made.unwrap().title, "first");
    });
    // The runtime goes, and the workers with it; the same server is served on another.
    drop(first);
    let api = server.api.clone();
    runtime().block_on(async move {
        let url = serve_again(api).await;
        let client = crudp::Client::builder(url)
            .transport(transport_as("ann", "member"))
            .build();
        let todos = TodosClient::new(&client);
        let made = within_a_minute("the call on the new runtime", todos.create("second".into()));
        assert_eq!(made.await.unwrap().title, "second");
    });
}
