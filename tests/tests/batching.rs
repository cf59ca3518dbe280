//! "Calls made together leave in one batch", on both Tokio runtimes: the calls a task makes
//! before it awaits them share one request, however the runtime schedules the client.

#![cfg(not(target_arch = "wasm32"))]

use crudp::Client;
use crudp_tests::*;
use futures_util::future::join_all;

const REPETITIONS: usize = 200;

async fn calls_made_together_leave_in_one_request() {
    let server = Server::start().await;
    let client = Client::new(server.url());
    let todos = TodosClient::new(&client);
    todos.create("warm-up".into()).await.unwrap();
    for rep in 0..REPETITIONS {
        let before = server.requests();
        let (eggs, first) = tokio::join!(todos.create(format!("eggs {rep}")), todos.read(1));
        assert_eq!(eggs.unwrap().title, format!("eggs {rep}"));
        assert_eq!(first.unwrap().title, "warm-up");
        assert_eq!(
            server.requests() - before,
            1,
            "repetition {rep}: join! of two calls"
        );

        let before = server.requests();
        let calls: Vec<_> = (0..10)
            .map(|n| todos.create(format!("bulk {rep}.{n}")))
            .collect();
        assert!(join_all(calls).await.iter().all(Result::is_ok));
        assert_eq!(
            server.requests() - before,
            1,
            "repetition {rep}: ten calls collected first"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn on_the_current_thread_runtime() {
    calls_made_together_leave_in_one_request().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_multi_threaded_runtime() {
    calls_made_together_leave_in_one_request().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_different_tasks_join_within_the_window() {
    let server = Server::start().await;
    let client = Client::builder(server.url())
        .batch_window(std::time::Duration::from_millis(200))
        .build();
    let todos = TodosClient::new(&client);
    todos.create("warm-up".into()).await.unwrap();
    let before = server.requests();
    // Dropped at once: nothing awaits them, so they leave when the window ends, together.
    for n in 0..4 {
        let todos = todos.clone();
        tokio::spawn(async move { drop(todos.create(format!("task {n}"))) })
            .await
            .unwrap();
    }
    eventually("the four calls", || server.executions() == 5).await;
    assert_eq!(server.requests() - before, 1);
}

#[test]
fn a_client_whose_runtime_shut_down_says_so_instead_of_waiting() {
    let serving = tokio::runtime::Runtime::new().unwrap();
    let server = serving.block_on(Server::start());
    let client = Client::new(server.url());
    let todos = TodosClient::new(&client);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    let made = first
        .block_on(async { todos.create("first".into()).await })
        .unwrap();
    assert_eq!(made.title, "first");
    // The runtime that ran the client's driver goes; the client is used on another.
    drop(first);
    let answer = runtime()
        .block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                todos.create("second".into()),
            )
            .await
        })
        .expect("an answer at once, not a wait for ever");
    assert!(
        matches!(
            answer,
            Err(crudp::CallError::Transport(
                crudp::TransportError::RuntimeGone
            ))
        ),
        "{answer:?}"
    );
    let _serving = serving.enter();
    drop(server);
}

/// Tasks that each make calls one after another, so that one call is often taken in as
/// another's answer comes: the status watchers hear of each change once, and the count of
/// calls pending never counts one twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_counts_each_call_once_and_watchers_hear_each_change_once() {
    const TASKS: usize = 4;
    let server = Server::start().await;
    let client = Client::builder(server.url())
        .batch_window(std::time::Duration::ZERO)
        .build();
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&statuses);
    client
        .on_status(move |s| sink.lock().unwrap().push(s))
        .keep();
    let todos = TodosClient::new(&client);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let todos = todos.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let mut most = 0;
                for n in 0..100 {
                    todos.create(format!("{task}.{n}")).await.unwrap();
                    most = most.max(client.status().pending());
                }
                most
            })
        })
        .collect();
    for task in join_all(tasks).await {
        let most = task.unwrap();
        // Its own call answered, a task sees at most the others' calls pending.
        assert!(most < TASKS, "{most} calls pending, of {TASKS} tasks");
    }
    eventually("nothing pending", || client.status().pending() == 0).await;
    let statuses = statuses.lock().unwrap();
    assert!(statuses.len() > 1, "{statuses:?}");
    assert!(
        statuses.windows(2).all(|w| w[0] != w[1]),
        "a status told twice in a row: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| s.pending() <= TASKS),
        "{statuses:?}"
    );
}
