//! Batches over `POST /sync`, results and broadcasts over SSE: routing, replay, overruns,
//! tokens and exactly-once delivery, against a real server.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crudp::{
    Action, CallError, ClientId, Connection, Module, Target,
    protocol::{Broadcast, PROTOCOL_VERSION, Position, decode_results, encode_batch},
};
use crudp_tests::*;
use futures_util::future::join_all;

/// Everything a listener received.
fn collect<T: Send + 'static>() -> (Arc<Mutex<Vec<T>>>, impl Fn(T) + Send + Sync + 'static) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (seen, move |value| sink.lock().unwrap().push(value))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The raw bytes and decoded payloads of every event a spy saw.
fn everything(spy: &Spy) -> Vec<u8> {
    let mut all = spy.raw();
    for event in spy.events() {
        all.extend(event.data);
    }
    all
}

#[tokio::test]
async fn results_reach_only_their_tab_and_role_broadcasts_only_that_role() {
    let server = Server::start().await;
    let tabs = [
        ("ann", "admin", server.client_as("ann", "admin")),
        ("ann", "admin", server.client_as("ann", "admin")),
        ("bob", "guest", server.client_as("bob", "guest")),
        ("bob", "guest", server.client_as("bob", "guest")),
    ];
    let mut spies = Vec::new();
    let mut heard = Vec::new();
    for (user, role, client) in &tabs {
        let token = server.token(user, role, client.id()).await;
        spies.push(Spy::connect(format!("{}/events?token={token}", server.url()), None).await);
        let (seen, listener) = collect::<Todo>();
        TodosClient::new(client).on_update(listener).keep();
        heard.push(seen);
    }

    let ann = TodosClient::new(&tabs[0].2);
    let secret = ann.create("ann-private-note".into()).await.unwrap();
    let bob = TodosClient::new(&tabs[2].2);
    let bobs = bob.create("bob-private-list".into()).await.unwrap();
    let shared = Todo {
        title: "bob-edited".into(),
        done: true,
        ..bobs
    };
    assert_eq!(bob.update(shared.clone()).await.unwrap(), shared);

    // The update went to the admins' tabs (ann's two) and to bob's own tab as its result.
    eventually("the admins hear the update", || {
        heard[0].lock().unwrap().len() == 1 && heard[1].lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(heard[0].lock().unwrap()[0], shared);
    assert_eq!(
        heard[2].lock().unwrap().as_slice(),
        std::slice::from_ref(&shared),
        "its own result"
    );
    assert!(
        heard[3].lock().unwrap().is_empty(),
        "bob's other tab is not an admin"
    );

    // On the wire: ann's results only on ann's first tab, bob's only on bob's first tab.
    spies[0]
        .wait_for("ann's results", |e| e.iter().any(|e| e.event == "results"))
        .await;
    spies[2]
        .wait_for("bob's results", |e| {
            e.iter().filter(|e| e.event == "results").count() == 2
        })
        .await;
    spies[1]
        .wait_for("the broadcast", |e| {
            e.iter().any(|e| e.event == "broadcast")
        })
        .await;
    let walls: Vec<Vec<u8>> = spies.iter().map(everything).collect();
    assert!(contains(&walls[0], b"ann-private-note"));
    for other in [1, 2, 3] {
        assert!(
            !contains(&walls[other], b"ann-private-note"),
            "tab {other} saw ann's note"
        );
    }
    assert!(contains(&walls[2], b"bob-private-list"));
    for other in [0, 1, 3] {
        assert!(
            !contains(&walls[other], b"bob-private-list"),
            "tab {other} saw bob's list"
        );
    }
    assert!(contains(&walls[0], b"bob-edited") && contains(&walls[1], b"bob-edited"));
    assert!(
        !contains(&walls[3], b"bob-edited"),
        "a guest tab saw an admin broadcast"
    );
    for (tab, wall) in walls.iter().enumerate() {
        for target in [&b"role:"[..], b"user:", b"client:", b"admin", b"guest"] {
            assert!(
                !contains(wall, target),
                "tab {tab}'s stream names a routing target"
            );
        }
    }
    let _ = secret;
}

#[tokio::test]
async fn a_reconnection_replays_every_missed_event_once_in_order() {
    let server = Server::start().await;
    let client = ClientId(77);
    let token = server.token("ann", "admin", client).await;
    let url = format!("{}/events?token={token}", server.url());
    let publish = |n: u32| {
        let api = server.api.clone();
        async move {
            api.broadcast(&TodosClient::DESCRIPTOR, Action::Read, &n, Target::All)
                .await
                .unwrap();
        }
    };

    let first = Spy::connect(url.clone(), None).await;
    publish(0).await;
    let seen = first
        .wait_for("event 0", |e| e.iter().any(|e| e.event == "broadcast"))
        .await;
    let last = seen.iter().rfind(|e| e.event == "broadcast").unwrap().id;
    drop(first);
    for n in 1..=5 {
        publish(n).await;
    }

    for form in ["header", "query"] {
        let spy = match form {
            "header" => Spy::connect(url.clone(), Some(last)).await,
            _ => Spy::connect(format!("{url}&lastEventId={last}"), None).await,
        };
        let events = spy
            .wait_for("the replay", |e| e.iter().any(|e| e.event == "ready"))
            .await;
        let values: Vec<u32> = events
            .iter()
            .filter(|e| e.event == "broadcast")
            .map(|e| {
                let b: Broadcast = postcard::from_bytes(&e.data).unwrap();
                postcard::from_bytes(&b.value).unwrap()
            })
            .collect();
        assert_eq!(values, vec![1, 2, 3, 4, 5], "replayed with the {form}");
        let ids: Vec<u64> = events
            .iter()
            .filter(|e| e.event == "broadcast")
            .map(|e| e.id)
            .collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "no gap: {ids:?}");
        let ready = events.last().unwrap();
        let position: Position = postcard::from_bytes(&ready.data).unwrap();
        assert_eq!(position.last_event_id, *ids.last().unwrap());
    }

    // Live events continue right after the replay: no gap, no duplicate.
    let spy = Spy::connect(url.clone(), Some(last)).await;
    spy.wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;
    publish(6).await;
    let events = spy
        .wait_for("event 6", |e| {
            e.iter().filter(|e| e.event == "broadcast").count() == 6
        })
        .await;
    let ids: Vec<u64> = events
        .iter()
        .filter(|e| e.event == "broadcast")
        .map(|e| e.id)
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    // Browsers reconnect 2 s after a loss (the default `retry_hint`).
    assert!(
        String::from_utf8(spy.raw())
            .unwrap()
            .starts_with("retry: 2000\n\n")
    );
}

#[tokio::test]
async fn a_stream_token_may_come_in_an_authorization_header_of_either_case() {
    let server = Server::start().await;
    let token = server.token("ann", "admin", ClientId(6)).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = reqwest::Client::new()
            .get(format!("{}/poll", server.url()))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
        let events = parse_events(&response.bytes().await.unwrap());
        assert_eq!(events[0].event, "ready", "{scheme}");
    }
}

#[tokio::test]
async fn an_unknown_event_id_gets_a_reset() {
    let server = Server::start().await;
    let token = server.token("ann", "admin", ClientId(5)).await;
    for id in ["1", "not-a-number"] {
        let spy = Spy::connect(
            format!("{}/events?token={token}&lastEventId={id}", server.url()),
            None,
        )
        .await;
        let events = spy
            .wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
            .await;
        assert_eq!(events[0].event, "reset", "{id}: {events:?}");
    }
    // Nor does a header that is not even text.
    let response = reqwest::Client::new()
        .get(format!("{}/events?token={token}", server.url()))
        .header(
            "last-event-id",
            reqwest::header::HeaderValue::from_bytes(b"\xe9t\xe9").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut read = Vec::new();
    let events = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let events = parse_events(&read);
            if events.iter().any(|e| e.event == "ready") {
                return events;
            }
            read.extend_from_slice(
                &futures_util::StreamExt::next(&mut body)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
    })
    .await
    .expect("ready within 20 s");
    assert_eq!(events[0].event, "reset", "{events:?}");
}

#[tokio::test]
async fn an_overrun_connection_is_closed_and_recovers_by_replay() {
    let server = Server::start_with(|b| b.connection_buffer(2).replay_buffer(1000)).await;
    let client = server.client_as("ann", "admin");
    let (seen, listener) = collect::<u32>();
    CatalogClient::new(&client).on_read(listener).keep();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&statuses);
    client
        .on_status(move |s| sink.lock().unwrap().push(s.connection))
        .keep();
    eventually("online", || {
        client.status().connection == Connection::Online
    })
    .await;

    // Published without a pause: the connection's buffer of 2 overflows at once.
    for n in 0..300u32 {
        server
            .api
            .broadcast(&CatalogClient::DESCRIPTOR, Action::Read, &n, Target::All)
            .await
            .unwrap();
    }
    eventually("every event", || seen.lock().unwrap().len() >= 300).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        (0..300).collect::<Vec<_>>(),
        "each once, in order"
    );
    let statuses = statuses.lock().unwrap();
    let dropped = statuses
        .windows(2)
        .any(|w| w == [Connection::Online, Connection::Reconnecting]);
    assert!(dropped, "the overrun connection was closed: {statuses:?}");
}

#[tokio::test]
async fn after_a_reset_calls_are_sent_again_and_run_exactly_once() {
    let server = Server::start_with(|b| b.connection_buffer(2).replay_buffer(4)).await;
    let client = server.client_as("ann", "admin");
    let resets = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&resets);
    client
        .on_reset(move || *counter.lock().unwrap() += 1)
        .keep();
    let todos = TodosClient::new(&client);
    let calls: Vec<_> = (0..5).map(|i| todos.create(format!("gated {i}"))).collect();
    eventually("the batch to start", || {
        server.store.todos.lock().unwrap().is_empty() && server.requests() == 1
    })
    .await;
    // While the batch waits at the gate, a flood overruns the connection and the replay
    // buffer: the batch's results will be evicted before the client can replay them.
    for n in 0..50u32 {
        server
            .api
            .broadcast(&CatalogClient::DESCRIPTOR, Action::Read, &n, Target::All)
            .await
            .unwrap();
    }
    server.store.gate.add_permits(5);
    for n in 0..50u32 {
        server
            .api
            .broadcast(&CatalogClient::DESCRIPTOR, Action::Read, &n, Target::All)
            .await
            .unwrap();
    }

    let results = tokio::time::timeout(Duration::from_secs(30), join_all(calls))
        .await
        .unwrap();
    let titles: Vec<String> = results.into_iter().map(|r| r.unwrap().title).collect();
    assert_eq!(
        titles,
        (0..5).map(|i| format!("gated {i}")).collect::<Vec<_>>()
    );
    assert!(
        server.requests() >= 2,
        "the calls whose results were lost were sent again"
    );
    assert!(
        *resets.lock().unwrap() >= 1,
        "the client was told that events were missed"
    );
    assert_eq!(server.executions(), 5, "every create ran exactly once");
    assert_eq!(server.store.todos.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn the_first_unavailable_stops_the_rest_of_the_batch() {
    let server = Server::start().await;
    let client = server.client_as("ann", "admin");
    let todos = TodosClient::new(&client);
    let (a, busy, b) = tokio::join!(
        todos.create("a".into()),
        todos.create("busy b".into()),
        todos.create("c".into())
    );
    let (a, busy, b) = (a.unwrap(), busy.unwrap(), b.unwrap());
    assert!(
        a.id < busy.id && busy.id < b.id,
        "order is kept across the retry: {a:?} {busy:?} {b:?}"
    );
    assert_eq!(server.executions(), 3);
    assert!(server.requests() >= 2, "the stopped calls were sent again");
}

#[tokio::test]
async fn a_token_that_expires_mid_stream_is_rotated_and_nothing_is_missed() {
    let server = Server::start_with(|b| b.token_ttl(Duration::from_secs(1))).await;
    let client = server.client_as("ann", "admin");
    let (seen, listener) = collect::<u32>();
    CatalogClient::new(&client).on_read(listener).keep();
    eventually("online", || {
        client.status().connection == Connection::Online
    })
    .await;
    for n in 0..40u32 {
        server
            .api
            .broadcast(&CatalogClient::DESCRIPTOR, Action::Read, &n, Target::All)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("every event", || seen.lock().unwrap().len() >= 40).await;
    assert_eq!(*seen.lock().unwrap(), (0..40).collect::<Vec<_>>());
}

#[tokio::test]
async fn forged_tokens_get_401_and_foreign_clients_get_403() {
    let server = Server::start().await;
    let http = http();
    let token = server.token("ann", "admin", ClientId(1)).await;
    let (body, tag) = token.split_once('.').unwrap();
    let mut forged_tag = tag.to_owned().into_bytes();
    forged_tag[0] = if forged_tag[0] == b'A' { b'B' } else { b'A' };
    let forged = format!("{body}.{}", String::from_utf8(forged_tag).unwrap());
    for bad in [forged.as_str(), "garbage", ""] {
        let response = http
            .get(format!("{}/events?token={bad}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{bad:?}");
        assert!(response.text().await.unwrap().contains("token"));
    }

    let batch = encode_batch(&crudp::protocol::Batch {
        version: PROTOCOL_VERSION,
        client: ClientId(1),
        packets: vec![],
    });
    let bob = http_as("bob", "guest");
    for endpoint in ["sync", "call"] {
        let response = bob
            .post(format!("{}/{endpoint}", server.url()))
            .body(batch.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{endpoint}");
    }
    let response = bob
        .post(format!("{}/token", server.url()))
        .body(token_request(&[ClientId(1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = http
        .post(format!("{}/sync", server.url()))
        .header("content-type", "application/octet-stream")
        .header("x-user", "nobody")
        .body(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_connection_that_never_reads_does_not_hold_up_the_others() {
    let server = Server::start_with(|b| b.connection_buffer(16)).await;
    let token = server.token("zed", "guest", ClientId(9)).await;
    // Opened and never read: its socket buffers fill, then its queue, then the hub drops it.
    let stalled = http()
        .get(format!("{}/events?token={token}", server.url()))
        .send()
        .await
        .unwrap();
    let client = server.client_as("ann", "admin");
    let (seen, listener) = collect::<Todo>();
    TodosClient::new(&client).on_read(listener).keep();
    eventually("online", || {
        client.status().connection == Connection::Online
    })
    .await;

    let payload = Todo {
        id: 1,
        title: "x".repeat(16 * 1024),
        done: false,
    };
    for _ in 0..400 {
        server
            .api
            .broadcast(
                &TodosClient::DESCRIPTOR,
                Action::Read,
                &payload,
                Target::All,
            )
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    eventually("every event at the reading client", || {
        seen.lock().unwrap().len() == 400
    })
    .await;
    drop(stalled);
}

#[tokio::test]
async fn call_mode_still_works_without_an_event_stream() {
    let server = Server::start().await;
    let client = crudp::Client::builder(server.url())
        .transport(transport_as("ann", "admin"))
        .mode(crudp::Mode::Call)
        .build();
    let todos = TodosClient::new(&client);
    let (a, b) = tokio::join!(todos.create("a".into()), todos.create(String::new()));
    assert_eq!(a.unwrap().title, "a");
    assert_eq!(
        b,
        Err(CallError::App(TodoError::Invalid("empty title".into())))
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(client.status().connection, Connection::Online);
}

/// A batch of `client` whose one create (`seq`) waits at the test store's gate.
fn gated(client: u64, seq: u64) -> Vec<u8> {
    let args = postcard::to_stdvec(&("gated".to_owned(),)).unwrap();
    batch_of(
        ClientId(client),
        vec![(seq, TodosClient::DESCRIPTOR.id, Action::Create, args)],
    )
}

async fn first_at_gate(server: &Server) {
    eventually("the first batch to run", || {
        server
            .store
            .at_gate
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let server = Server::start_with(|b| b.queue_depth(1).workers(1)).await;
    let http = http_as("ann", "admin");
    let gated = |client: u64| gated(client, 1);
    let post = |client: u64| {
        http.post(format!("{}/sync", server.url()))
            .body(gated(client))
            .send()
    };
    assert_eq!(post(1).await.unwrap().status(), 202);
    first_at_gate(&server).await;
    assert_eq!(post(2).await.unwrap().status(), 202, "one batch may wait");
    let full = post(3).await.unwrap();
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "1");
    server.store.gate.add_permits(2);
    eventually("the queue to drain", || server.executions() == 2).await;
    assert_eq!(
        post(3).await.unwrap().status(),
        202,
        "served again once drained"
    );

    let answer = http
        .post(format!("{}/call", server.url()))
        .body(gated(4))
        .send();
    server.store.gate.add_permits(2);
    let results = decode_results(&answer.await.unwrap().bytes().await.unwrap(), 10).unwrap();
    assert!(matches!(results.results[0].outcome, crudp::Outcome::Ok(_)));
}

#[tokio::test]
async fn presence_hooks_see_streams_open_and_close_and_streams_are_limited_per_user() {
    let (server, log) = Server::start_logging_presence(1).await;
    let token = server.token("ann", "admin", ClientId(1)).await;
    let url = format!("{}/events?token={token}", server.url());
    let spy = Spy::connect(url.clone(), None).await;
    spy.wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;
    assert_eq!(*log.lock().unwrap(), ["+ann"]);

    let second = reqwest::get(url.clone()).await.unwrap();
    assert_eq!(second.status(), 429);
    assert!(second.text().await.unwrap().contains("ann"));

    drop(spy);
    eventually("the disconnect", || log.lock().unwrap().len() == 2).await;
    assert_eq!(*log.lock().unwrap(), ["+ann", "-ann"]);
    let again = Spy::connect(url, None).await;
    again
        .wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;

    // A poll counts against the user's streams, but is not presence.
    let poll = format!("{}/poll?token={token}", server.url());
    assert_eq!(reqwest::get(&poll).await.unwrap().status(), 429);
    drop(again);
    eventually("the disconnect", || log.lock().unwrap().len() == 4).await;
    let polled = reqwest::get(&poll).await.unwrap();
    assert_eq!(polled.status(), 200);
    let events = parse_events(&polled.bytes().await.unwrap());
    assert_eq!(events[0].event, "ready");
    assert_eq!(*log.lock().unwrap(), ["+ann", "-ann", "+ann", "-ann"]);
}

#[tokio::test]
async fn a_later_batch_waits_for_an_earlier_call_the_server_could_not_run() {
    let server = Server::start().await;
    let client = crudp::Client::builder(server.url())
        .transport(transport_as("ann", "admin"))
        .max_batch_packets(1)
        .build();
    let todos = TodosClient::new(&client);
    let (busy, later) = tokio::join!(
        todos.create("busy first".into()),
        todos.create("later".into())
    );
    let (busy, later) = (busy.unwrap(), later.unwrap());
    assert!(
        busy.id < later.id,
        "order held across batches: {busy:?} {later:?}"
    );
    assert_eq!(server.executions(), 2);
}

#[tokio::test]
async fn one_stream_carries_several_clients_of_one_user_and_says_whose_results_are_whose() {
    let server = Server::start().await;
    let url = server.url();
    let (a, b, bobs) = (ClientId(0xA), ClientId(0xB), ClientId(0xB0B));
    let token = |clients: &[ClientId], user: &str| {
        let body = token_request(clients);
        let url = url.clone();
        let user = user.to_owned();
        async move {
            http_as(&user, "member")
                .post(format!("{url}/token"))
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(token(&[bobs], "bob").await.status(), 200);
    assert_eq!(
        token(&[a, bobs], "ann").await.status(),
        403,
        "bob's client is not ann's"
    );
    let many: Vec<ClientId> = (1..=65).map(ClientId).collect();
    assert_eq!(token(&many, "ann").await.status(), 400);
    assert_eq!(token(&[], "ann").await.status(), 400);

    let grant = token(&[a, b], "ann").await;
    assert_eq!(grant.status(), 200);
    let grant: crudp::protocol::TokenGrant =
        postcard::from_bytes(&grant.bytes().await.unwrap()).unwrap();
    let spy = Spy::connect(format!("{url}/events?token={}", grant.token), None).await;
    spy.wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;
    for (client, title) in [(a, "from a"), (b, "shout from b")] {
        let response = http_as("ann", "member")
            .post(format!("{url}/sync"))
            .body(batch_of(client, creates(title, [1])))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let events = spy
        .wait_for("both results and b's broadcast", |e| {
            e.iter().filter(|e| e.event == "results").count() == 2
                && e.iter().any(|e| e.event == "broadcast")
        })
        .await;
    let mut whose: Vec<ClientId> = events
        .iter()
        .filter(|e| e.event == "results")
        .map(|e| {
            crudp::protocol::decode_client_results(&e.data.clone().into(), 10)
                .unwrap()
                .0
        })
        .collect();
    whose.sort();
    assert_eq!(whose, [a, b]);
    // The stream carries b's broadcast for a; it names b, so that b's tab can skip it.
    let shout = events.iter().find(|e| e.event == "broadcast").unwrap();
    let shout: Broadcast = postcard::from_bytes(&shout.data).unwrap();
    assert_eq!(shout.origin, Some(b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_ends_with_the_missed_events_or_the_first_new_one() {
    let server = Server::start().await;
    let url = server.url();
    let client = ClientId(0x9011);
    let token = server.token("ann", "member", client).await;
    let poll = |last: Option<u64>| {
        let query = match last {
            Some(id) => format!("{url}/poll?token={token}&lastEventId={id}"),
            None => format!("{url}/poll?token={token}"),
        };
        async move {
            let body = tokio::time::timeout(Duration::from_secs(10), async {
                reqwest::get(query).await.unwrap().bytes().await.unwrap()
            })
            .await
            .expect("the poll ends");
            parse_events(&body)
        }
    };
    // The first poll says where the stream stands, and ends.
    let first = poll(None).await;
    assert_eq!(
        first.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["ready"]
    );
    let position = first[0].id;
    // Nothing new: the next poll waits for the first new event, and ends with it.
    let waiting = tokio::spawn(poll(Some(position)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "a poll with nothing to say waits");
    let body = batch_of(client, creates("polled", [1]));
    let sent = http_as("ann", "member")
        .post(format!("{url}/sync"))
        .body(body)
        .send();
    assert_eq!(sent.await.unwrap().status(), 202);
    let new = waiting.await.unwrap();
    assert_eq!(
        new.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["results"]
    );
    // Missed events come at once, without `ready`.
    let missed = poll(Some(position)).await;
    assert_eq!(missed, new);
    // An empty `Last-Event-ID` header (a proxy's, say) leaves the position to the query.
    let beside = reqwest::Client::new()
        .get(format!("{url}/poll?token={token}&lastEventId={position}"))
        .header("last-event-id", "")
        .send();
    let beside = tokio::time::timeout(Duration::from_secs(10), async {
        parse_events(&beside.await.unwrap().bytes().await.unwrap())
    })
    .await
    .expect("the poll ends at once");
    assert_eq!(beside, new);
    // A client not sure it is connected asks for `ready`, and gets it at once.
    let asked = reqwest::get(format!(
        "{url}/poll?token={token}&lastEventId={}&ready=true",
        new[0].id
    ));
    let asked = tokio::time::timeout(Duration::from_secs(10), async {
        parse_events(&asked.await.unwrap().bytes().await.unwrap())
    })
    .await
    .expect("the poll ends at once");
    assert_eq!(
        asked.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["ready"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_poll_ends_empty_after_its_wait_and_an_unknown_position_gets_a_reset() {
    let server = Server::start().await;
    let url = server.url();
    let token = server.token("ann", "member", ClientId(0x9012)).await;
    let poll = |query: String| async move {
        let started = std::time::Instant::now();
        let body = tokio::time::timeout(Duration::from_secs(60), async {
            reqwest::get(query).await.unwrap().bytes().await.unwrap()
        })
        .await
        .expect("the poll ends");
        (parse_events(&body), started.elapsed())
    };
    let (first, _) = poll(format!("{url}/poll?token={token}")).await;
    let position = first[0].id;
    // Nothing comes: the answer ends empty after its wait (25 s), for the client to ask again.
    let (quiet, waited) = poll(format!("{url}/poll?token={token}&lastEventId={position}")).await;
    assert_eq!(quiet, []);
    assert!(waited >= Duration::from_secs(20), "ended after {waited:?}");
    // A position the server never gave: `reset`, then `ready`, at once.
    let (unknown, _) = poll(format!("{url}/poll?token={token}&lastEventId=1")).await;
    assert_eq!(
        unknown.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["reset", "ready"]
    );
}

#[tokio::test]
async fn a_client_with_its_share_of_batches_waiting_gets_503_and_others_go_on() {
    let server = Server::start_with(|b| b.queue_per_client(1).workers(2)).await;
    let http = http_as("ann", "admin");
    let post = |client: u64, seq: u64| {
        http.post(format!("{}/sync", server.url()))
            .body(gated(client, seq))
            .send()
    };
    assert_eq!(post(1, 1).await.unwrap().status(), 202);
    first_at_gate(&server).await;
    assert_eq!(
        post(1, 2).await.unwrap().status(),
        202,
        "one batch may wait"
    );
    let full = post(1, 3).await.unwrap();
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "1");
    assert!(full.text().await.unwrap().contains("client"));
    // Another client of the same user is not held back by it.
    assert_eq!(post(2, 1).await.unwrap().status(), 202);
    server.store.gate.add_permits(3);
    eventually("the batches to run", || server.executions() == 3).await;
    assert_eq!(
        post(1, 3).await.unwrap().status(),
        202,
        "served again once drained"
    );
    server.store.gate.add_permits(1);
    eventually("the last batch to run", || server.executions() == 4).await;
}

#[tokio::test]
async fn results_larger_than_one_event_come_in_several_in_order_and_all_arrive() {
    let server = Server::start_with(|b| b.results_event_bytes(200)).await;
    let client = ClientId(0x5E);
    let token = server.token("ann", "admin", client).await;
    let spy = Spy::connect(format!("{}/events?token={token}", server.url()), None).await;
    spy.wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;
    let response = http_as("ann", "admin")
        .post(format!("{}/sync", server.url()))
        .body(batch_of(client, creates("split", 1..=30)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let results = |events: &[RawEvent]| -> Vec<crudp::protocol::PacketResult> {
        events
            .iter()
            .filter(|e| e.event == "results")
            .flat_map(|e| {
                let (to, results) =
                    crudp::protocol::decode_client_results(&e.data.clone().into(), 100).unwrap();
                assert_eq!(to, client);
                results.results
            })
            .collect()
    };
    let events = spy.wait_for("30 results", |e| results(e).len() == 30).await;
    let parts = events.iter().filter(|e| e.event == "results").count();
    assert!(parts >= 3, "30 results of about 30 bytes in {parts} events");
    let results = results(&events);
    let seqs: Vec<u64> = results.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    assert!(
        results
            .iter()
            .all(|r| matches!(r.outcome, crudp::Outcome::Ok(_)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_at_their_extremes_keep_the_streams_and_the_handlers_going() {
    // A heartbeat of nothing (taken as a millisecond) and tokens and handlers without limit:
    // each once panicked every stream, or a handler that waited.
    let server = Server::start_with(|b| {
        b.heartbeat(Duration::ZERO)
            .token_ttl(Duration::MAX)
            .handler_timeout(Duration::MAX)
    })
    .await;
    let client = server.client_as("ann", "member");
    let todos = TodosClient::new(&client);
    let created = tokio::time::timeout(Duration::from_secs(30), todos.create("milk".into()))
        .await
        .expect("the result came over the stream");
    assert_eq!(created.unwrap().title, "milk");
    // A handler that waits (at the gate) finishes when it may.
    let gated = tokio::spawn({
        let todos = todos.clone();
        async move { todos.create("gated once".into()).await }
    });
    while server
        .store
        .at_gate
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.store.gate.add_permits(1);
    let gated = tokio::time::timeout(Duration::from_secs(30), gated)
        .await
        .expect("the waiting handler finished")
        .unwrap();
    assert_eq!(gated.unwrap().title, "gated once");
}
