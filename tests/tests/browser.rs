//! The browser client in headless Chromium, against the real test server (`test-server`),
//! whose address `cargo xtask test` passes at build time.

#![cfg(target_arch = "wasm32")]

use std::{cell::RefCell, rc::Rc, time::Duration};

use crudp::{
    CallError, Client, ClientId, Connection, LocalStorage, MemoryStorage, Mode, Storage,
    UploadProgress, files::FileRef, transport::FetchTransport,
};
use crudp_tests::*;
use futures_util::future::{join, join_all};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[path = "browser/frameworks.rs"]
mod frameworks;

/// The test server's address, given at build time by `cargo xtask test`.
const SERVER: Option<&str> = option_env!("CRUDP_TEST_SERVER");
const CONTROL: Option<&str> = option_env!("CRUDP_TEST_CONTROL");
/// Another server, behind a proxy that buffers whole answers, event streams included.
const BUFFERED: Option<&str> = option_env!("CRUDP_TEST_BUFFERED");

fn given(value: Option<&'static str>) -> &'static str {
    match value {
        Some(value) => value,
        None => panic!("run the browser tests with `cargo xtask test`, which starts their server"),
    }
}

fn server() -> &'static str {
    given(SERVER)
}

fn control(path: &str) -> String {
    format!("{}/{path}", given(CONTROL))
}

async fn count(what: &str) -> usize {
    let response = gloo_net::http::Request::get(&control(what))
        .send()
        .await
        .unwrap();
    response.text().await.unwrap().parse().unwrap()
}

async fn command(what: &str) {
    let response = gloo_net::http::Request::post(&control(what))
        .send()
        .await
        .unwrap();
    assert!(response.ok(), "control {what}: {}", response.status());
}

/// Brings the server back, should a failed test have left it down.
async fn reachable() {
    command("up").await;
}

/// A client with a storage of its own, so tests do not take over each other's queues.
fn client() -> Client {
    Client::builder(server())
        .storage(MemoryStorage::new())
        .build()
}

async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        gloo_timers::future::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn collect() -> (Rc<RefCell<Vec<Todo>>>, impl Fn(Todo) + 'static) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&seen);
    (seen, move |todo| sink.borrow_mut().push(todo))
}

#[wasm_bindgen_test]
async fn all_four_actions_through_the_generated_stub() {
    reachable().await;
    let client = client();
    let todos = TodosClient::new(&client);
    let created = todos.create("browser milk".into()).await.unwrap();
    assert_eq!(created.title, "browser milk");
    assert_eq!(todos.read(created.id).await.unwrap(), created);
    let done = Todo {
        done: true,
        ..created.clone()
    };
    assert_eq!(todos.update(done.clone()).await.unwrap(), done);
    todos.delete(created.id).await.unwrap();
    assert_eq!(
        todos.read(created.id).await,
        Err(CallError::App(TodoError::NotFound))
    );
    assert_eq!(client.status().connection, Connection::Online);
}

#[wasm_bindgen_test]
async fn a_batch_fails_in_the_middle_and_calls_of_one_tick_leave_together() {
    reachable().await;
    let client = client();
    let todos = TodosClient::new(&client);
    let before = count("batches").await;
    let (a, b, c) = futures_util::join!(
        todos.create("first".into()),
        todos.create(String::new()),
        todos.create("third".into())
    );
    assert_eq!(a.unwrap().title, "first");
    assert_eq!(
        b,
        Err(CallError::App(TodoError::Invalid("empty title".into())))
    );
    assert_eq!(c.unwrap().title, "third");
    assert_eq!(count("batches").await - before, 1, "one batch");
}

#[wasm_bindgen_test]
async fn a_broadcast_from_a_second_client_reaches_the_typed_listener() {
    reachable().await;
    let listener_client = client();
    let (seen, listener) = collect();
    TodosClient::new(&listener_client)
        .on_create(listener)
        .keep();
    eventually("online", || {
        listener_client.status().connection == Connection::Online
    })
    .await;

    let other = client();
    let shouted = TodosClient::new(&other)
        .create("shout from the other client".into())
        .await
        .unwrap();
    eventually("the broadcast", || {
        seen.borrow().iter().any(|t| t.id == shouted.id)
    })
    .await;
}

#[wasm_bindgen_test]
async fn calls_made_while_the_server_is_down_are_delivered_once_it_is_back() {
    reachable().await;
    let client = client();
    let todos = TodosClient::new(&client);
    todos.read(0).await.ok();
    let before = count("executions").await;
    command("down").await;
    let calls: Vec<_> = (0..3)
        .map(|i| todos.create(format!("while down {i}")))
        .collect();
    eventually("offline", || {
        client.status().connection == Connection::Offline
    })
    .await;
    assert_eq!(client.status().pending(), 3);
    command("up").await;
    let results = join_all(calls).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap().title, format!("while down {i}"));
    }
    assert_eq!(count("executions").await - before, 3, "each call ran once");
}

/// Leaves two calls in the page's `localStorage`, as a page closed while offline does; returns
/// the ID of the client that made them.
async fn leave_a_queue_behind() -> ClientId {
    let id = leave_calls_behind_offline("saved").await;
    command("up").await;
    id
}

/// The same, with the server left down, and the titles starting with `titles`.
async fn leave_calls_behind_offline(titles: &str) -> ClientId {
    command("down").await;
    let first = Client::new(server());
    let todos = TodosClient::new(&first);
    drop((
        todos.create(format!("{titles} 0")),
        todos.create(format!("{titles} 1")),
    ));
    gloo_timers::future::sleep(Duration::from_millis(100)).await;
    let id = first.id();
    // The page goes away: the client saves its queue and lets its ID go.
    drop((todos, first));
    id
}

/// Whether the page's `localStorage` still holds a queue of `client`.
fn queue_saved(client: ClientId) -> bool {
    let storage = LocalStorage;
    storage
        .keys()
        .iter()
        .any(|key| key.ends_with(&format!(":queue:{client}")))
}

#[wasm_bindgen_test]
async fn a_saved_queue_is_delivered_by_the_next_client_of_the_page_exactly_once() {
    reachable().await;
    let before = count("executions").await;
    let id = leave_a_queue_behind().await;
    assert!(queue_saved(id));

    // The default storage: localStorage, as after a reload. The client takes a new ID, and
    // sends the queue left behind under its own ID.
    let second = Client::new(server());
    assert_ne!(second.id(), id);
    let (seen, listener) = collect();
    TodosClient::new(&second).on_create(listener).keep();
    eventually("the saved calls' results", || seen.borrow().len() == 2).await;
    let titles: Vec<_> = seen.borrow().iter().map(|t| t.title.clone()).collect();
    assert_eq!(titles, ["saved 0", "saved 1"]);
    assert_eq!(count("executions").await - before, 2);
    eventually("the saved queue to empty", || !queue_saved(id)).await;
    // Heard once: by result, not again by broadcast.
    gloo_timers::future::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.borrow().len(), 2);
}

#[wasm_bindgen_test]
async fn calls_left_behind_count_in_the_status_of_the_client_that_sends_them() {
    reachable().await;
    // Their handler waits at the gate, so they stay in flight once sent.
    let id = leave_calls_behind_offline("gated, left behind").await;
    // The next client of the page (after a reload, say), still offline: the two calls wait,
    // and its status says so.
    let second = Client::new(server());
    let statuses = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&statuses);
    second
        .on_status(move |status| sink.borrow_mut().push(status))
        .keep();
    eventually("the calls left behind counted", || {
        second.status().queued == 2
    })
    .await;
    assert!(statuses.borrow().iter().any(|s| s.queued == 2));
    // Online, it adopts and sends them: they count as in flight until answered.
    command("up").await;
    eventually("the calls left behind in flight", || {
        second.status().in_flight == 2
    })
    .await;
    assert!(statuses.borrow().iter().any(|s| s.in_flight == 2));
    command("gate").await;
    command("gate").await;
    eventually("the saved queue to empty", || !queue_saved(id)).await;
    eventually("nothing pending", || second.status().pending() == 0).await;
    let last = *statuses.borrow().last().unwrap();
    assert_eq!(last.pending(), 0, "the watcher heard the calls answered");
}

#[wasm_bindgen_test]
async fn two_clients_starting_at_once_send_a_queue_left_behind_once() {
    reachable().await;
    let id = leave_a_queue_behind().await;
    let (executions, batches) = (count("executions").await, count("batches").await);
    // Both look for queues left behind at the same moment; the Web Lock picks one.
    let (second, third) = (Client::new(server()), Client::new(server()));
    assert!(second.id() != id && third.id() != id && second.id() != third.id());
    eventually("the saved queue to empty", || !queue_saved(id)).await;
    gloo_timers::future::sleep(Duration::from_millis(500)).await;
    assert_eq!(count("executions").await - executions, 2);
    assert_eq!(
        count("batches").await - batches,
        1,
        "sent once, by one client"
    );
    // Both still work, each under its own ID.
    let (a, b) = join(
        TodosClient::new(&second).create("after the race 0".into()),
        TodosClient::new(&third).create("after the race 1".into()),
    )
    .await;
    assert_eq!(a.unwrap().title, "after the race 0");
    assert_eq!(b.unwrap().title, "after the race 1");
}

/// Tells the page's listeners that it goes into the back/forward cache (`pagehide`) or comes
/// back from it (`pageshow`), as the browser does.
fn page_transition(kind: &str) {
    let init = web_sys::PageTransitionEventInit::new();
    init.set_persisted(true);
    let event = web_sys::PageTransitionEvent::new_with_event_init_dict(kind, &init).unwrap();
    web_sys::window().unwrap().dispatch_event(&event).unwrap();
}

#[wasm_bindgen_test]
async fn a_page_back_from_the_back_forward_cache_takes_its_id_back_after_another_sent_its_queue() {
    reachable().await;
    command("down").await;
    let cached = Client::new(server());
    let call = TodosClient::new(&cached).create("through the cache".into());
    gloo_timers::future::sleep(Duration::from_millis(100)).await;
    let before = count("executions").await;

    // Into the cache: the ID is let go with the call saved, and another client adopts it.
    page_transition("pagehide");
    command("up").await;
    let other = Client::new(server());
    eventually("the queue sent by the other client", || {
        !queue_saved(cached.id())
    })
    .await;
    assert_eq!(count("executions").await - before, 1);

    // Back: the page takes its ID back and its call resolves, without running it again.
    page_transition("pageshow");
    let todo = call.await.unwrap();
    assert_eq!(todo.title, "through the cache");
    assert_eq!(count("executions").await - before, 1);
    let next = TodosClient::new(&cached)
        .create("after the cache".into())
        .await;
    assert_eq!(next.unwrap().title, "after the cache");
    drop(other);
}

/// Hides `navigator.locks` until dropped, as in a browser without Web Locks: clients made
/// meanwhile decide who holds an ID by the lease in `localStorage`.
struct WithoutWebLocks(web_sys::Navigator);

impl WithoutWebLocks {
    fn hide() -> Self {
        let navigator = web_sys::window().unwrap().navigator();
        let descriptor = js_sys::Object::new();
        js_sys::Reflect::set(
            &descriptor,
            &"value".into(),
            &wasm_bindgen::JsValue::UNDEFINED,
        )
        .unwrap();
        js_sys::Reflect::set(&descriptor, &"configurable".into(), &true.into()).unwrap();
        js_sys::Object::define_property(&navigator, &"locks".into(), &descriptor);
        Self(navigator)
    }
}

impl Drop for WithoutWebLocks {
    fn drop(&mut self) {
        js_sys::Reflect::delete_property(&self.0, &"locks".into()).unwrap();
    }
}

/// `future`'s output, or a panic naming `what` if it takes longer than 20 s.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    let timeout = gloo_timers::future::sleep(Duration::from_secs(20));
    match futures_util::future::select(Box::pin(future), Box::pin(timeout)).await {
        futures_util::future::Either::Left((output, _)) => output,
        futures_util::future::Either::Right(_) => panic!("{what}: no answer within 20 s"),
    }
}

#[wasm_bindgen_test]
async fn without_web_locks_a_page_back_from_the_back_forward_cache_takes_its_id_back() {
    reachable().await;
    let _hidden = WithoutWebLocks::hide();
    command("down").await;
    let cached = Client::new(server());
    let call = TodosClient::new(&cached).create("back without locks".into());
    gloo_timers::future::sleep(Duration::from_millis(100)).await;
    let before = count("executions").await;
    page_transition("pagehide");
    command("up").await;
    page_transition("pageshow");
    let todo = within("the call made before the cache", call).await;
    assert_eq!(todo.unwrap().title, "back without locks");
    let next = TodosClient::new(&cached).create("and after it".into());
    assert_eq!(
        within("a call after the cache", next).await.unwrap().title,
        "and after it"
    );
    assert_eq!(count("executions").await - before, 2);
}

#[wasm_bindgen_test]
async fn without_web_locks_a_page_whose_id_another_took_meanwhile_stops() {
    reachable().await;
    let _hidden = WithoutWebLocks::hide();
    command("down").await;
    let cached = Client::new(server());
    let call = TodosClient::new(&cached).create("taken over".into());
    gloo_timers::future::sleep(Duration::from_millis(100)).await;
    let before = count("executions").await;

    // Into the cache; a new tab takes the ID let go, with its saved call, and sends it.
    page_transition("pagehide");
    command("up").await;
    let other = Client::new(server());
    assert_eq!(other.id(), cached.id());
    let (seen, listener) = collect();
    TodosClient::new(&other).on_create(listener).keep();
    eventually("the call sent by the other tab", || {
        seen.borrow().len() == 1
    })
    .await;

    // Back, the page does not take the ID back: two pages never send under one ID. (Its
    // call's result may have reached it first: in one page, its event stream stayed open.)
    page_transition("pageshow");
    let taken_over = |result: &Result<_, CallError<_>>| {
        matches!(
            result,
            Err(CallError::Transport(crudp::TransportError::TakenOver))
        )
    };
    let taken = within("the call of the page taken over", call).await;
    assert!(
        taken_over(&taken) || taken.as_ref().is_ok_and(|t| t.title == "taken over"),
        "{taken:?}"
    );
    let later = TodosClient::new(&cached).create("never sent".into());
    let later = within("a call after it stopped", later).await;
    assert!(taken_over(&later), "{later:?}");
    let still = TodosClient::new(&other).create("the other goes on".into());
    assert!(within("a call of the other tab", still).await.is_ok());
    assert_eq!(count("executions").await - before, 2, "each call once");
}

#[wasm_bindgen_test]
async fn a_batch_not_answered_in_time_is_sent_again_and_runs_once() {
    reachable().await;
    let transport = FetchTransport::new().request_timeout(Duration::from_millis(500));
    let client = Client::builder(server())
        .mode(Mode::Call)
        .transport(transport)
        .storage(MemoryStorage::new())
        .build();
    let todos = TodosClient::new(&client);
    let first = within("a first call", todos.create("answered in time".into())).await;
    assert!(first.is_ok(), "{first:?}");
    assert_eq!(client.status().connection, Connection::Online);
    let executions = count("executions").await;
    // Its handler waits at the gate, so the answer does not come in time: the request is
    // given up, which the client counts as a failure, and the batch is sent again.
    let call = todos.create("gated, from the browser".into());
    let given_up = async {
        while client.status().connection == Connection::Online {
            gloo_timers::future::sleep(Duration::from_millis(50)).await;
        }
    };
    let either = futures_util::future::select(Box::pin(call), Box::pin(given_up));
    let call = match within("the request given up", either).await {
        futures_util::future::Either::Left((answer, _)) => {
            panic!("answered before the gate opened: {answer:?}")
        }
        futures_util::future::Either::Right(((), call)) => call,
    };
    command("gate").await;
    let todo = within("the call, once the gate opened", call).await;
    assert_eq!(todo.unwrap().title, "gated, from the browser");
    assert_eq!(count("executions").await - executions, 1, "run once");
}

#[wasm_bindgen_test]
async fn the_stream_token_rotates_and_no_broadcast_is_missed() {
    reachable().await;
    let listener_client = client();
    let (seen, listener) = collect();
    TodosClient::new(&listener_client)
        .on_create(listener)
        .keep();
    eventually("online", || {
        listener_client.status().connection == Connection::Online
    })
    .await;
    let other = client();
    let shouter = TodosClient::new(&other);
    let mut ids = Vec::new();
    // Over 6 s: the 2 s tokens of the listening stream expire and are renewed several times.
    for i in 0..12 {
        ids.push(shouter.create(format!("shout {i}")).await.unwrap().id);
        gloo_timers::future::sleep(Duration::from_millis(500)).await;
    }
    eventually("every broadcast", || {
        ids.iter()
            .all(|id| seen.borrow().iter().any(|t| t.id == *id))
    })
    .await;
    let heard: Vec<u64> = seen
        .borrow()
        .iter()
        .map(|t| t.id)
        .filter(|id| ids.contains(id))
        .collect();
    assert_eq!(heard, ids, "each once, in order");
}

#[wasm_bindgen_test]
async fn behind_a_proxy_that_holds_the_event_stream_back_the_client_polls() {
    reachable().await;
    let client = Client::builder(given(BUFFERED))
        .storage(MemoryStorage::new())
        .build();
    let todos = TodosClient::new(&client);
    let (seen, listener) = collect();
    let _heard = todos.on_create(listener);
    // Its result comes by polling, once the stream has said nothing for a few seconds.
    let todo = todos.create("through the buffer".into()).await.unwrap();
    assert_eq!(todo.title, "through the buffer");
    assert!(
        client.status().polling,
        "the status says it polls: {:?}",
        client.status()
    );
    // So do broadcasts: another client's call (whose results come in the answer).
    let other = Client::builder(given(BUFFERED))
        .storage(MemoryStorage::new())
        .mode(Mode::Call)
        .build();
    TodosClient::new(&other)
        .create("shout to the poller".into())
        .await
        .unwrap();
    eventually("the broadcast, by polling", || {
        seen.borrow()
            .iter()
            .any(|t| t.title == "shout to the poller")
    })
    .await;
    assert_eq!(client.status().connection, Connection::Online);
}

#[wasm_bindgen_test]
async fn a_file_picked_in_the_page_is_uploaded_with_progress_and_arrives_intact() {
    reachable().await;
    let client = client();
    let data: Vec<u8> = (0..(3usize << 20) + 5)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(&data[..]));
    let file = web_sys::File::new_with_u8_array_sequence(&parts, "page.bin").unwrap();
    let seen = Rc::new(RefCell::new(Vec::<UploadProgress>::new()));
    let sink = Rc::clone(&seen);
    let uploaded = client
        .upload(file)
        .on_progress(move |p| sink.borrow_mut().push(p))
        .await
        .unwrap();
    // The digest the page computed is the one of the bytes, computed apart.
    let expected = FileRef::inline("page.bin", data.clone());
    assert_eq!(
        (uploaded.name.as_str(), uploaded.size, uploaded.sha256),
        ("page.bin", expected.size, expected.sha256)
    );
    // The server read the same bytes.
    let received = AttachmentsClient::new(&client)
        .create(uploaded)
        .await
        .unwrap();
    assert_eq!(
        (received.size, received.sha256),
        (expected.size, expected.sha256)
    );
    let seen = seen.borrow();
    assert!(seen.len() >= 4, "a report per 1 MiB piece: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0].sent < w[1].sent), "{seen:?}");
    let total = data.len() as u64;
    assert_eq!(seen.last(), Some(&UploadProgress { sent: total, total }));
}
