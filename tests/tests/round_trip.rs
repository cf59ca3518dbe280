//! The generated client against a real server over HTTP.

#![cfg(not(target_arch = "wasm32"))]

use crudp::{CallError, Client, Module, RejectCode};
use crudp_tests::*;
use futures_util::future::join_all;

#[tokio::test]
async fn all_four_actions_round_trip() {
    let server = Server::start().await;
    let client = Client::new(server.url());
    let todos = TodosClient::new(&client);

    let milk = todos.create("milk".into()).await.unwrap();
    assert_eq!(
        milk,
        Todo {
            id: 1,
            title: "milk".into(),
            done: false
        }
    );
    assert_eq!(todos.read(1).await.unwrap(), milk);

    let done = Todo { done: true, ..milk };
    assert_eq!(todos.update(done.clone()).await.unwrap(), done);
    assert_eq!(todos.read(1).await.unwrap(), done);

    todos.delete(1).await.unwrap();
    assert_eq!(
        todos.read(1).await,
        Err(CallError::App(TodoError::NotFound))
    );
    assert!(server.store.todos.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_read_only_module_has_only_read() {
    let server = Server::start().await;
    let client = Client::new(server.url());
    let catalog = CatalogClient::new(&client);

    assert_eq!(catalog.read("apple".into()).await, Ok(120));
    assert_eq!(
        catalog.read("pear".into()).await,
        Err(CallError::App("no price for pear".to_owned()))
    );
    assert_eq!(CatalogClient::DESCRIPTOR.id, 7);
    assert_eq!(CatalogClient::DESCRIPTOR.actions, &[crudp::Action::Read]);

    // A create sent by hand to the read-only module is rejected, not run.
    let forged: crudp::CallFuture<u32, String> =
        client.call(7, crudp::Action::Create, &("apple".to_owned(),));
    match forged.await {
        Err(CallError::Rejected {
            code: RejectCode::UnknownAction,
            message,
        }) => {
            assert!(message.contains("no `create` action"), "{message}");
        }
        other => panic!("expected an unknown-action rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_handler_error_arrives_typed() {
    let server = Server::start().await;
    let todos = TodosClient::new(&Client::new(server.url()));
    assert_eq!(
        todos.create(String::new()).await,
        Err(CallError::App(TodoError::Invalid("empty title".into())))
    );
    assert_eq!(
        todos
            .update(Todo {
                id: 99,
                title: "x".into(),
                done: false
            })
            .await,
        Err(CallError::App(TodoError::NotFound))
    );
}

#[tokio::test]
async fn a_module_the_server_does_not_mount_is_rejected() {
    let server = Server::start().await;
    let unmounted = UnmountedClient::new(&Client::new(server.url()));
    match unmounted.create(1).await {
        Err(CallError::Rejected {
            code: RejectCode::UnknownHandler,
            message,
        }) => {
            assert!(
                message.contains(&UnmountedClient::DESCRIPTOR.id.to_string()),
                "{message}"
            );
        }
        other => panic!("expected an unknown-handler rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn arguments_of_the_wrong_type_are_rejected() {
    let server = Server::start().await;
    let client = Client::new(server.url());
    let id = TodosClient::DESCRIPTOR.id;
    let wrong: crudp::CallFuture<Todo, TodoError> =
        client.call(id, crudp::Action::Update, &("not a todo".to_owned(),));
    match wrong.await {
        Err(CallError::Rejected {
            code: RejectCode::BadArguments,
            message,
        }) => {
            assert!(message.contains("`Todos::update`"), "{message}");
        }
        other => panic!("expected a bad-arguments rejection, got {other:?}"),
    }
    assert_eq!(server.executions(), 0);
}

#[tokio::test]
async fn one_batch_fails_in_the_middle_and_succeeds_around_it() {
    let server = Server::start().await;
    let todos = TodosClient::new(&Client::new(server.url()));

    let (first, second, third) = tokio::join!(
        todos.create("a".into()),
        todos.create(String::new()),
        todos.create("c".into())
    );

    assert_eq!(first.unwrap().title, "a");
    assert_eq!(
        second,
        Err(CallError::App(TodoError::Invalid("empty title".into())))
    );
    assert_eq!(third.unwrap().title, "c");
    assert_eq!(
        server.requests(),
        1,
        "the three calls must leave in one batch"
    );
    assert_eq!(server.executions(), 3);
    assert_eq!(server.store.todos.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_thousand_calls_leave_in_one_batch() {
    let server = Server::start().await;
    let todos = TodosClient::new(&Client::new(server.url()));

    let calls: Vec<_> = (0..1000)
        .map(|i| todos.create(format!("todo {i}")))
        .collect();
    let results = join_all(calls).await;

    assert_eq!(server.requests(), 1);
    for (i, result) in results.into_iter().enumerate() {
        let todo = result.unwrap();
        assert_eq!(todo.title, format!("todo {i}"));
        assert_eq!(
            todo.id,
            i as u64 + 1,
            "calls run in the order they were made"
        );
    }
    assert_eq!(server.store.todos.lock().unwrap().len(), 1000);
}

#[tokio::test]
async fn a_dropped_call_is_still_sent() {
    let server = Server::start().await;
    let todos = TodosClient::new(&Client::new(server.url()));
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let noted = std::sync::Arc::clone(&heard);
    let _listener = todos.on_create(move |todo| noted.lock().unwrap().push(todo.title.clone()));
    drop(todos.create("fire and forget".into()));
    let after = todos.read(1).await.unwrap();
    assert_eq!(after.title, "fire and forget");
    // Its result still reaches the listeners, though nobody awaits it.
    assert_eq!(*heard.lock().unwrap(), ["fire and forget"]);
}

#[tokio::test]
async fn a_panicking_handler_fails_its_own_packet_only() {
    let server = Server::start().await;
    let client = Client::new(server.url());
    let fragile = FragileClient::new(&client);
    let todos = TodosClient::new(&client);

    let (before, broken, after) = tokio::join!(
        fragile.create(),
        fragile.delete("boom".into()),
        todos.create("still here".into())
    );

    assert_eq!(before, Ok(1));
    match broken {
        Err(CallError::Rejected {
            code: RejectCode::Internal,
            message,
        }) => {
            assert!(message.contains("panicked"), "{message}");
        }
        other => panic!("expected an internal rejection, got {other:?}"),
    }
    assert_eq!(after.unwrap().title, "still here");
    assert_eq!(
        todos.read(1).await.unwrap().title,
        "still here",
        "the server keeps serving"
    );
}

#[tokio::test]
async fn two_modules_with_one_id_are_refused_at_build() {
    #[crudp::module(id = 7)]
    trait Clash {
        async fn delete(&self, ctx: &crudp::Context) -> Result<(), ()>;
    }
    struct Nothing;
    impl Clash for Nothing {
        async fn delete(&self, _: &crudp::Context) -> Result<(), ()> {
            Ok(())
        }
    }

    let builder = || {
        crudp::server::Crudp::builder()
            .handler(CatalogServer::new(Prices))
            .handler(ClashServer::new(Nothing))
    };
    let message = builder().try_build().unwrap_err().to_string();
    assert!(
        message.contains("Catalog") && message.contains("Clash"),
        "{message}"
    );
    assert!(
        message.contains("id = N"),
        "the message says how to fix it: {message}"
    );

    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder().build()))
        .expect_err("build() panics on a duplicate ID");
    let panic = panic.downcast_ref::<String>().unwrap();
    assert!(
        panic.contains("Catalog") && panic.contains("Clash"),
        "{panic}"
    );
}

#[test]
fn ids_are_stable_hashes_of_the_trait_name() {
    assert_eq!(TodosClient::DESCRIPTOR.id, crudp::module_id("Todos"));
    assert_eq!(TodosClient::DESCRIPTOR.id, 0xf5e3_1faa);
    assert_eq!(
        <TodosServer<()> as Module>::DESCRIPTOR,
        TodosClient::DESCRIPTOR
    );
    assert_eq!(TodosClient::DESCRIPTOR.actions, &crudp::Action::ALL);
    assert_eq!(
        FragileClient::DESCRIPTOR.actions,
        &[crudp::Action::Create, crudp::Action::Delete]
    );
}

#[tokio::test]
async fn a_dropped_listener_hears_nothing_and_a_kept_one_hears_everything() {
    let server = Server::start().await;
    let client = Client::new(server.url());
    let todos = TodosClient::new(&client);
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (dropped, kept) = (heard.clone(), heard.clone());
    drop(
        todos
            .on_create(move |t: Todo| dropped.lock().unwrap().push(format!("dropped {}", t.title))),
    );
    todos
        .on_create(move |t: Todo| kept.lock().unwrap().push(format!("kept {}", t.title)))
        .keep();
    todos.create("milk".into()).await.unwrap();
    assert_eq!(*heard.lock().unwrap(), ["kept milk"]);
}

#[tokio::test]
async fn a_refused_request_says_its_status_and_that_sending_it_again_will_not_help() {
    let server = Server::start().await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-user", "nobody".parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let client = Client::builder(server.url())
        .mode(crudp::Mode::Call)
        .transport(crudp::transport::ReqwestTransport::with_client(http))
        .build();
    match TodosClient::new(&client).create("milk".into()).await {
        Err(CallError::Transport(error)) => {
            assert_eq!(error.status(), Some(401), "{error}");
            assert!(!error.is_retryable());
            assert!(matches!(error, crudp::TransportError::Status { .. }));
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dropped_with_calls_on_their_way_still_delivers_them() {
    let server = Server::start().await;
    for mode in [crudp::Mode::Sync, crudp::Mode::Call] {
        let client = Client::builder(server.url()).mode(mode).build();
        let todos = TodosClient::new(&client);
        let call = todos.create(format!("last words {mode:?}"));
        drop((todos, client));
        let todo = call
            .await
            .expect("sent and answered after the client was dropped");
        assert_eq!(todo.title, format!("last words {mode:?}"));
    }
}

/// Calls too large together go again in halves and arrive; a call too large alone fails with
/// `413` (its body cut short by the server, over a real connection), and the client goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_body_limit_go_in_halves_and_one_too_large_alone_fails_with_413() {
    let server = Server::start_with(|b| b.max_body_bytes(256 << 10)).await;
    for mode in [crudp::Mode::Sync, crudp::Mode::Call] {
        let client = Client::builder(server.url()).mode(mode).build();
        let todos = TodosClient::new(&client);
        let (big, other) = ("a".repeat(200 << 10), "b".repeat(200 << 10));
        let (a, b) = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            futures_util::future::join(todos.create(big.clone()), todos.create(other.clone())),
        )
        .await
        .expect("in halves, in time");
        assert_eq!(a.unwrap().title, big, "{mode:?}");
        assert_eq!(b.unwrap().title, other, "{mode:?}");

        let huge = "c".repeat(16 << 20);
        let before = server.requests();
        let alone = tokio::time::timeout(std::time::Duration::from_secs(30), todos.create(huge))
            .await
            .expect("refused in time, not sent again and again");
        let Err(CallError::Transport(error)) = alone else {
            panic!("{mode:?}: {alone:?}");
        };
        assert_eq!(error.status(), Some(413), "{mode:?}: {error}");
        // The server read what the client still sent before closing: the client got the
        // answer, not a reset connection to try again over.
        assert_eq!(server.requests() - before, 1, "{mode:?}: sent once");
        assert_eq!(todos.create("after".into()).await.unwrap().title, "after");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_another_protocol_version_fails_the_calls_with_its_message_once() {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use axum::response::IntoResponse;
    use crudp::TransportError;
    let server = Server::start().await;
    // In front of the server, what a deploy of a newer protocol answers a page left open.
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&refused);
    let newer = axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let counted = Arc::clone(&counted);
            async move {
                if request.uri().path().ends_with("/sync") {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let message = "invalid batch: unsupported protocol version 3: this side \
                                   speaks version 4";
                    return (http::StatusCode::BAD_REQUEST, message).into_response();
                }
                next.run(request).await
            }
        },
    );
    let app = axum::Router::new()
        .nest("/crudp", server.api.router())
        .layer(newer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/crudp", listener.local_addr().unwrap());
    tokio::spawn(async move { crudp::server::serve(listener, app).await.unwrap() });

    let client = Client::builder(url)
        .transport(transport_as("ann", "member"))
        .build();
    let todos = TodosClient::new(&client);
    let answer = tokio::time::timeout(Duration::from_secs(30), todos.create("old".into()))
        .await
        .expect("answered, not sent again and again");
    match answer {
        Err(CallError::Transport(TransportError::Status {
            status: 400,
            message,
        })) => assert!(
            message.contains("unsupported protocol version 3"),
            "{message}"
        ),
        other => panic!("expected the server's refusal, got {other:?}"),
    }
    assert_eq!(refused.load(Ordering::SeqCst), 1, "sent once");
    assert_eq!(server.executions(), 0);
}
