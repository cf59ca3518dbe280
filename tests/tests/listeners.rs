//! What listeners hear: a delete's arguments (it returns nothing), typed broadcasts from
//! server code, and a native client that signs in with a header or a bearer token.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crudp::{CallError, Client, Module, Target, User, server::AuthError};
use crudp_tests::{api::*, harness::*};

/// A sink for what a listener hears, and the listener.
fn heard<T: Send + 'static>() -> (Arc<Mutex<Vec<T>>>, impl Fn(T) + Send + Sync + 'static) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (seen, move |value| sink.lock().unwrap().push(value))
}

#[tokio::test]
async fn a_delete_is_heard_with_what_it_deleted_by_its_caller_and_by_everyone_else() {
    let server = Server::start().await;
    let (ann, bob) = (
        server.client_as("ann", "admin"),
        server.client_as("bob", "guest"),
    );
    let (by_ann, listener) = heard::<u64>();
    let _ann_hears = TodosClient::new(&ann).on_delete(listener);
    let (by_bob, listener) = heard::<u64>();
    let _bob_hears = TodosClient::new(&bob).on_delete(listener);
    // Bob's stream is open before Ann deletes.
    TodosClient::new(&bob).read(0).await.unwrap_err();
    eventually("bob's stream", || {
        bob.status().connection == crudp::Connection::Online
    })
    .await;

    let todos = TodosClient::new(&ann);
    let todo = todos.create("milk".into()).await.unwrap();
    todos.delete(todo.id).await.unwrap();

    assert_eq!(
        *by_ann.lock().unwrap(),
        [todo.id],
        "the caller hears its own delete"
    );
    eventually("bob to hear of the delete", || {
        *by_bob.lock().unwrap() == [todo.id]
    })
    .await;
}

#[tokio::test]
async fn typed_broadcasts_from_server_code_reach_the_listeners_of_their_action()
-> Result<(), crudp::server::HubError> {
    let server = Server::start().await;
    let client = server.client_as("bob", "guest");
    let todos = TodosClient::new(&client);
    let (updated, listener) = heard::<Todo>();
    let _updates = todos.on_update(listener);
    let (deleted, listener) = heard::<u64>();
    let _deletes = todos.on_delete(listener);
    todos.read(0).await.unwrap_err();
    eventually("the stream", || {
        client.status().connection == crudp::Connection::Online
    })
    .await;

    // ANCHOR: typed_broadcast
    let todo = Todo {
        id: 7,
        title: "renamed by a nightly job".into(),
        done: true,
    };
    TodosServer::broadcast_update(&server.api, &todo, Target::All).await?;
    // `delete` returns nothing: its listeners hear its argument, the ID.
    TodosServer::broadcast_delete(&server.api, &7, Target::All).await?;
    // ANCHOR_END: typed_broadcast

    eventually("both broadcasts", || {
        updated.lock().unwrap().len() == 1 && deleted.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(updated.lock().unwrap()[0], todo);
    assert_eq!(*deleted.lock().unwrap(), [7]);
    // The untyped form stays, for generic code.
    server
        .api
        .broadcast(
            &TodosClient::DESCRIPTOR,
            crudp::Action::Delete,
            &8u64,
            Target::All,
        )
        .await
        .unwrap();
    eventually("the untyped broadcast", || {
        *deleted.lock().unwrap() == [7, 8]
    })
    .await;
    Ok(())
}

/// Users by bearer token; a token removed from the map is refused.
type Tokens = Arc<Mutex<HashMap<String, &'static str>>>;

async fn server_of(tokens: &Tokens) -> Server {
    let tokens = Arc::clone(tokens);
    Server::start_with(move |builder: crudp::server::CrudpBuilder| {
        builder.authenticator(move |parts: &http::request::Parts| {
            let bearer = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| AuthError::new("sign in first"))?;
            match tokens.lock().unwrap().get(bearer) {
                Some(user) => Ok(User::new(*user, "admin")),
                None => Err(AuthError::new("this token expired")),
            }
        })
    })
    .await
}

#[tokio::test]
async fn a_native_client_signs_in_with_a_bearer_token_and_refreshes_it()
-> Result<(), crudp::InvalidHeader> {
    let tokens: Tokens = Arc::default();
    tokens.lock().unwrap().insert("first".into(), "ann");
    let server = server_of(&tokens).await;

    // ANCHOR: bearer
    let client = Client::builder(server.url()).bearer_token("first")?.build();
    // ANCHOR_END: bearer
    let todos = TodosClient::new(&client);
    let (shouts, listener) = heard::<Todo>();
    let _shouts = todos.on_create(listener);
    todos.create("milk".into()).await.unwrap();

    // The token is refreshed before the old one expires.
    tokens.lock().unwrap().insert("second".into(), "ann");
    client.set_bearer_token("second").unwrap();
    tokens.lock().unwrap().remove("first");
    todos.create("eggs".into()).await.unwrap();

    // A broadcast reaches the stream, opened with a token that the bearer got.
    let other = Client::builder(server.url())
        .bearer_token("second")?
        .build();
    TodosClient::new(&other)
        .create("shout bread".into())
        .await
        .unwrap();
    eventually("the shout", || {
        shouts
            .lock()
            .unwrap()
            .iter()
            .any(|t| t.title == "shout bread")
    })
    .await;

    // Without a valid token, a call is refused, and says why.
    client.set_bearer_token("stale").unwrap();
    match todos.create("tea".into()).await {
        Err(CallError::Transport(e)) => {
            assert_eq!(e.status(), Some(401), "{e}");
            assert!(e.to_string().contains("expired"), "{e}");
        }
        other => panic!("a stale token got {other:?}"),
    }
    assert_eq!(server.executions(), 3);
    Ok(())
}

#[tokio::test]
async fn a_shared_reqwest_client_signs_its_event_stream_in_with_its_default_authorization() {
    let tokens: Tokens = Arc::default();
    tokens.lock().unwrap().insert("shared".into(), "ann");
    let server = server_of(&tokens).await;
    let mut defaults = reqwest::header::HeaderMap::new();
    defaults.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer shared"),
    );
    let http = reqwest::Client::builder()
        .default_headers(defaults)
        .build()
        .unwrap();
    let client = Client::builder(server.url())
        .transport(crudp::transport::ReqwestTransport::with_client(http))
        .build();
    // Results come over the event stream: it opened as ann.
    let todos = TodosClient::new(&client);
    let made = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        todos.create("milk".into()),
    )
    .await
    .expect("the result, over the event stream");
    assert_eq!(made.unwrap().title, "milk");
}

#[tokio::test]
async fn headers_are_sent_as_set_and_bad_ones_are_refused_with_the_reason() {
    let server = Server::start().await;
    let client = Client::builder(server.url())
        .header("X-User", "ann:admin")
        .unwrap()
        .build();
    let (updates, listener) = heard::<Todo>();
    let _updates = TodosClient::new(&client).on_update(listener);
    // Updates are broadcast to admins: the header made this client one.
    let admin = TodosClient::new(&server.client_as("cat", "admin"));
    let todo = admin.create("milk".into()).await.unwrap();
    TodosClient::new(&client).read(todo.id).await.unwrap();
    eventually("the stream", || {
        client.status().connection == crudp::Connection::Online
    })
    .await;
    admin.update(todo.clone()).await.unwrap();
    eventually("the admin broadcast", || {
        !updates.lock().unwrap().is_empty()
    })
    .await;

    client.set_header("x-user", "nobody").unwrap();
    let refused = TodosClient::new(&client).read(todo.id).await;
    assert!(
        matches!(&refused, Err(CallError::Transport(e)) if e.status() == Some(401)),
        "{refused:?}"
    );
    client.set_header("x-user", "ann:admin").unwrap();
    TodosClient::new(&client).read(todo.id).await.unwrap();
    // Without the header the client is an anonymous visitor, and its ID is Ann's.
    client.remove_header("X-USER");
    let anonymous = TodosClient::new(&client).read(todo.id).await;
    assert!(
        matches!(&anonymous, Err(CallError::Transport(e)) if e.status() == Some(403)),
        "{anonymous:?}"
    );

    for (name, value) in [
        ("x user", "1"),
        ("x-crudp-key", "mine"),
        ("x-user", "ann:admin\r\nx-role: root"),
    ] {
        let error = client.set_header(name, value).unwrap_err();
        assert_eq!(error.name, name);
        assert!(error.to_string().contains(name), "{error}");
        assert!(Client::builder(server.url()).header(name, value).is_err());
    }
}

#[tokio::test]
async fn a_live_read_is_fetched_once_and_kept_current_by_what_its_follows_hear() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let server = Server::start().await;
    let (ann, bob) = (
        server.client_as("ann", "admin"),
        server.client_as("bob", "admin"),
    );
    let milk = TodosClient::new(&bob).create("milk".into()).await.unwrap();

    let fetches = Arc::new(AtomicUsize::new(0));
    let (reads, changed) = heard::<crudp::Read<Todo, TodoError>>();
    let live = {
        let (todos, fetches, id) = (TodosClient::new(&ann), Arc::clone(&fetches), milk.id);
        crudp::LiveRead::new(
            &ann,
            move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                todos.read(id)
            },
            changed,
        )
    };
    let todos = TodosClient::new(&ann);
    live.follow(
        |hear| todos.on_update(hear),
        |todo: &mut Todo, update: Todo| {
            if update.id == todo.id {
                *todo = update;
            }
        },
    );
    eventually("the first fetch", || {
        live.get() == crudp::Read::Ready(milk.clone())
    })
    .await;
    eventually("ann's stream", || {
        ann.status().connection == crudp::Connection::Online
    })
    .await;

    // Bob's update reaches Ann's read as a broadcast: no second fetch.
    let done = Todo {
        done: true,
        ..milk.clone()
    };
    TodosClient::new(&bob).update(done.clone()).await.unwrap();
    eventually("the update", || live.get().value() == Some(&done)).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(
        reads.lock().unwrap().last(),
        Some(&crudp::Read::Ready(done.clone())),
        "the change callback heard it"
    );
    live.refetch();
    eventually("the refetch", || fetches.load(Ordering::SeqCst) == 2).await;

    // Dropped, it stops listening.
    let before = ann.listeners();
    drop(live);
    assert_eq!(
        ann.listeners(),
        before - 2,
        "its follow and its reset watcher are gone"
    );
    let reads_before = reads.lock().unwrap().len();
    TodosClient::new(&bob).update(milk).await.unwrap();
    TodosClient::new(&ann).read(0).await.unwrap_err();
    assert_eq!(reads.lock().unwrap().len(), reads_before);
}

/// Made where no runtime runs, a live read has nothing to fetch with: it says so as a
/// failure, not `Loading` for ever.
#[test]
fn a_live_read_made_outside_a_runtime_fails_and_says_why() {
    let client = Client::builder("http://127.0.0.1:9/crudp").build();
    let (reads, changed) = heard::<crudp::Read<Todo, TodoError>>();
    let todos = TodosClient::new(&client);
    let live = crudp::LiveRead::new(&client, move || todos.read(1), changed);
    let Some(CallError::Transport(error)) = live.get().error().cloned() else {
        panic!("not failed: {:?}", live.get());
    };
    assert!(error.to_string().contains("Tokio runtime"), "{error}");
    assert_eq!(reads.lock().unwrap().as_slice(), [live.get()]);
}
