//! Offline: calls made while the server is unreachable, and a queue that outlives its client.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use crudp::{Client, Connection, MemoryStorage, Storage};
use crudp_tests::*;
use futures_util::future::join_all;

fn collect() -> (Arc<Mutex<Vec<Todo>>>, impl Fn(Todo) + Send + Sync + 'static) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (seen, move |todo| sink.lock().unwrap().push(todo))
}

fn client(proxy: &Proxy, storage: Option<&MemoryStorage>) -> Client {
    let builder = Client::builder(proxy.url()).transport(transport_as("ann", "admin"));
    match storage {
        Some(storage) => builder.storage(storage.clone()).build(),
        None => builder.build(),
    }
}

#[tokio::test]
async fn calls_made_while_the_server_is_down_are_delivered_when_it_is_back() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    proxy.down().await;
    let client = client(&proxy, None);
    let todos = TodosClient::new(&client);
    let (seen, listener) = collect();
    todos.on_create(listener).keep();

    let calls: Vec<_> = (0..3)
        .map(|i| todos.create(format!("offline {i}")))
        .collect();
    eventually("offline", || {
        client.status().connection == Connection::Offline
    })
    .await;
    assert_eq!(client.status().queued, 3);
    assert_eq!(server.executions(), 0);

    proxy.up().await;
    client.sync();
    let results = tokio::time::timeout(Duration::from_secs(30), join_all(calls))
        .await
        .unwrap();
    let titles: Vec<_> = results.into_iter().map(|r| r.unwrap().title).collect();
    assert_eq!(titles, ["offline 0", "offline 1", "offline 2"]);
    assert_eq!(server.executions(), 3);
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(client.status().pending(), 0);
}

#[tokio::test]
async fn a_new_client_over_the_same_storage_delivers_a_saved_queue() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    proxy.down().await;
    let storage = MemoryStorage::new();

    let first = client(&proxy, Some(&storage));
    let todos = TodosClient::new(&first);
    drop((todos.create("kept 0".into()), todos.create("kept 1".into())));
    let id = first.id();
    tokio::task::yield_now().await;
    drop((todos, first));
    assert!(
        storage.keys().iter().any(|k| k.contains("queue")),
        "the queue was saved"
    );

    proxy.up().await;
    let second = client(&proxy, Some(&storage));
    assert_eq!(second.id(), id, "the new client takes over the saved queue");
    let (seen, listener) = collect();
    TodosClient::new(&second).on_create(listener).keep();
    eventually("the saved calls' results", || {
        seen.lock().unwrap().len() == 2
    })
    .await;
    let titles: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.title.clone())
        .collect();
    assert_eq!(titles, ["kept 0", "kept 1"]);
    assert_eq!(server.executions(), 2);
    eventually("the saved queue to empty", || {
        !storage.keys().iter().any(|k| k.contains("queue"))
    })
    .await;
}

#[tokio::test]
async fn a_queue_whose_results_were_lost_runs_exactly_once_after_the_takeover() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    let storage = MemoryStorage::new();

    let first = client(&proxy, Some(&storage));
    let todos = TodosClient::new(&first);
    drop(
        (0..3)
            .map(|i| todos.create(format!("gated {i}")))
            .collect::<Vec<_>>(),
    );
    // The batch reaches the server and starts; then the network goes and the client closes.
    eventually("the batch to run", || {
        server.store.at_gate.load(Ordering::SeqCst) == 1
    })
    .await;
    proxy.down().await;
    drop((todos, first));
    server.store.gate.add_permits(3);
    eventually("the batch to finish", || server.executions() == 3).await;

    proxy.up().await;
    let second = client(&proxy, Some(&storage));
    let (seen, listener) = collect();
    TodosClient::new(&second).on_create(listener).keep();
    eventually("the results, answered again", || {
        seen.lock().unwrap().len() == 3
    })
    .await;
    let ids: Vec<_> = seen.lock().unwrap().iter().map(|t| t.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(server.executions(), 3, "nothing ran twice");
    assert_eq!(server.store.todos.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_saved_queue_leaves_at_once_in_call_mode_too() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    proxy.down().await;
    let storage = MemoryStorage::new();
    let build = || {
        Client::builder(proxy.url())
            .mode(crudp::Mode::Call)
            .transport(transport_as("ann", "admin"))
            .storage(storage.clone())
            .build()
    };
    let first = build();
    drop(TodosClient::new(&first).create("saved".into()));
    eventually("the call saved", || {
        storage.keys().iter().any(|k| k.contains("queue"))
    })
    .await;
    drop(first);
    proxy.up().await;
    // Nothing is made on the new client: its restored call goes by itself.
    let _second = build();
    eventually("the saved call run", || server.executions() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_that_buffers_the_event_stream_the_client_polls() {
    let server = Server::start().await;
    let proxy = BufferingProxy::start(server.addr).await;
    let client = Client::builder(proxy.url())
        .transport(transport_as("ann", "member"))
        .build();
    let todos = TodosClient::new(&client);
    let (seen, listener) = collect();
    todos.on_create(listener).keep();
    let milk = tokio::time::timeout(Duration::from_secs(20), todos.create("milk".into()))
        .await
        .expect("answered by polling")
        .unwrap();
    assert_eq!(milk.title, "milk");
    assert!(client.status().polling, "the status says so");
    assert_eq!(client.status().connection, Connection::Online);
    // Another user's broadcast reaches it too.
    let bob = server.client_as("bob", "member");
    TodosClient::new(&bob)
        .create("shout from bob".into())
        .await
        .unwrap();
    eventually("bob's broadcast, by polling", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|t| t.title == "shout from bob")
    })
    .await;
    let again = todos.read(milk.id).await.unwrap();
    assert_eq!(again, milk);
    assert_eq!(server.executions(), 3, "each call ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_drops_the_users_saved_calls_and_the_next_user_never_sends_them() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    let storage = MemoryStorage::new();
    let as_user = |user: &str| {
        Client::builder(proxy.url())
            .transport(transport_as(user, "member"))
            .storage(storage.clone())
            .build()
    };
    let ann = as_user("ann");
    let todos = TodosClient::new(&ann);
    todos.create("ann online".into()).await.unwrap();
    proxy.down().await;
    let queued = tokio::spawn(todos.create("ann queued".into()));
    eventually("ann's call saved", || {
        storage.keys().iter().any(|k| k.contains(":queue:"))
    })
    .await;

    ann.sign_out();
    let dropped = queued.await.unwrap();
    assert!(
        matches!(
            dropped,
            Err(crudp::CallError::Transport(
                crudp::TransportError::SignedOut
            ))
        ),
        "{dropped:?}"
    );
    assert_eq!(
        storage.keys(),
        Vec::<String>::new(),
        "nothing of ann is kept"
    );
    assert!(matches!(
        todos.create("after signing out".into()).await,
        Err(crudp::CallError::Transport(
            crudp::TransportError::SignedOut
        ))
    ));
    // Nothing waits: neither the call queued when ann signed out nor those made since.
    let _ = todos.create("and again".into()).await;
    assert_eq!(ann.status().pending(), 0, "{:?}", ann.status());

    // Bob signs in on the same storage: his calls go, ann's never do.
    proxy.up().await;
    let bob = as_user("bob");
    let todo = TodosClient::new(&bob).create("bob's".into()).await.unwrap();
    assert_eq!(todo.title, "bob's");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let titles = server.store.titles();
    assert_eq!(titles, ["ann online", "bob's"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_saved_for_one_user_is_never_sent_as_another() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    let storage = MemoryStorage::new();
    let as_user = |user: &str| {
        Client::builder(proxy.url())
            .transport(transport_as(user, "member"))
            .storage(storage.clone())
            .build()
    };
    // Ann's call waits offline in the saved queue when her client goes (no sign-out: her
    // session simply ended).
    let ann = as_user("ann");
    TodosClient::new(&ann)
        .create("ann online".into())
        .await
        .unwrap();
    proxy.down().await;
    drop(TodosClient::new(&ann).create("ann left behind".into()));
    eventually("ann's call saved", || {
        storage.keys().iter().any(|k| k.contains(":queue:"))
    })
    .await;
    drop(ann);
    proxy.up().await;

    // Bob's client takes the queue over (nothing told it whose it was), but the server refuses
    // ann's client ID to bob: the client stops rather than send anything as bob's.
    let stale = as_user("bob");
    let refused = TodosClient::new(&stale).create("bob first".into()).await;
    match refused {
        Err(crudp::CallError::Transport(e)) => assert_eq!(e.status(), Some(403), "{e}"),
        other => panic!("expected the stale client to stop, got {other:?}"),
    }
    // The next client is bob's own; ann's call stays hers, saved.
    let bob = as_user("bob");
    TodosClient::new(&bob).create("bob's".into()).await.unwrap();
    let stored = |title: &str| {
        server
            .store
            .todos
            .lock()
            .unwrap()
            .values()
            .filter(|t| t.title == title)
            .count()
    };
    assert_eq!(stored("ann left behind"), 0);
    drop((stale, bob));
    let kept = storage.keys();
    assert!(
        kept.iter().any(|k| k.contains(":queue:")),
        "ann's call is kept for her: {kept:?}"
    );
    assert_eq!(stored("bob first"), 0);
}

#[tokio::test]
async fn a_client_whose_id_another_took_over_fails_its_waiting_calls_with_taken_over() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    proxy.down().await;
    let storage = MemoryStorage::new();
    let client = client(&proxy, Some(&storage));
    let todos = TodosClient::new(&client);
    let first = todos.create("before".into());
    let queue = format!("queue:{}", client.id());
    eventually("the call saved", || {
        storage.keys().iter().any(|key| key.ends_with(&queue))
    })
    .await;
    // Another client of this storage holds the ID now (its lease is another holder's): the
    // next save finds it, and the client stops.
    let lease = format!("lease:{}", client.id());
    let lease = storage
        .keys()
        .into_iter()
        .find(|key| key.ends_with(&lease))
        .unwrap();
    storage.set(&lease, "1:0:0");
    let second = todos.create("after".into());
    for (name, call) in [("the second call", second), ("the first call", first)] {
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap_or_else(|_| panic!("{name} never resolved"));
        assert!(
            matches!(
                result,
                Err(crudp::CallError::Transport(
                    crudp::TransportError::TakenOver
                ))
            ),
            "{name}: {result:?}"
        );
    }
    assert_eq!(
        storage.get(&lease).as_deref(),
        Some("1:0:0"),
        "its lease stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_made_while_the_stream_is_open_do_not_cut_the_pauses_of_a_later_outage() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    let client = client(&proxy, None);
    let todos = TodosClient::new(&client);
    // Its result came over the event stream: the stream is open.
    todos.create("online".into()).await.unwrap();
    for _ in 0..200 {
        client.sync();
    }
    proxy.down().await;
    // Whoever comes to the proxy's address from now on is counted and turned away.
    let listener = tokio::net::TcpListener::bind(proxy.addr).await.unwrap();
    let knocks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&knocks);
    let door = tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(connection);
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    door.abort();
    let knocks = knocks.load(Ordering::SeqCst);
    // Pauses of about 0.2, 0.4, 0.8 s… leave room for a handful of attempts in 2 s.
    assert!(
        (1..=12).contains(&knocks),
        "{knocks} connections in 2 s: the syncs made while online cut the back-off short"
    );
}
