//! Anonymous mode: without a signed-in user, each client key is a visitor of its own. A client
//! ID is its key's alone, requests without a key are refused, and visitors share the queue per
//! address, however many keys they make.

#![cfg(not(target_arch = "wasm32"))]

use std::{sync::atomic::Ordering, time::Duration};

use crudp::{
    ClientId, Outcome,
    protocol::{CLIENT_KEY_HEADER, TokenGrant},
};
use crudp_tests::*;

/// Two visitors' keys: base64url of 16 bytes each.
const MALLORY: &str = "bWFsbG9yeS1rZXktMDAwMA";
const VICTIM: &str = "dmljdGltLWtleS0wMDAwMA";

/// Posts `body` to `endpoint` with `key` as the client key (none if `None`).
async fn post(
    server: &Server,
    endpoint: &str,
    key: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let http = match key {
        Some(key) => http_keyed(key),
        None => reqwest::Client::new(),
    };
    http.post(format!("{}/{endpoint}", server.url()))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_is_its_keys_alone_and_a_request_without_a_key_is_refused() {
    let server = Server::start().await;
    let victim = ClientId(0x7777);
    let created = post(
        &server,
        "call",
        Some(VICTIM),
        batch_of(victim, creates("mine", [1])),
    )
    .await;
    assert_eq!(created.status(), 200);
    let results = crudp::protocol::decode_results(&created.bytes().await.unwrap(), 10).unwrap();
    assert!(matches!(results.results[0].outcome, Outcome::Ok(_)));

    // Another visitor who learnt the ID (from a broadcast's origin, say) can neither send
    // under it, nor read its results, nor open its events.
    for endpoint in ["call", "sync"] {
        let body = batch_of(victim, creates("theirs", [1, 2]));
        let refused = post(&server, endpoint, Some(MALLORY), body).await;
        assert_eq!(refused.status(), 403, "{endpoint}");
        let message = refused.text().await.unwrap();
        assert!(message.contains("belongs to another user"), "{message}");
    }
    let token = post(&server, "token", Some(MALLORY), token_request(&[victim])).await;
    assert_eq!(token.status(), 403);
    assert_eq!(server.executions(), 1, "only the owner's call ran");

    // Without a key, or with one too short to be random, a request that is not signed in
    // says what is missing.
    for key in [None, Some("c2hvcnQ"), Some("not base64!")] {
        let body = batch_of(ClientId(0x8888), creates("keyless", [1]));
        let refused = post(&server, "call", key, body).await;
        assert_eq!(refused.status(), 401, "{key:?}");
        let message = refused.text().await.unwrap();
        assert!(message.contains(CLIENT_KEY_HEADER), "{message}");
    }

    // The owner's key still works, and the server names each visitor by its key.
    let grant = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 200);
        postcard::from_bytes::<TokenGrant>(&response.bytes().await.unwrap()).unwrap()
    };
    let own = grant(post(&server, "token", Some(VICTIM), token_request(&[victim])).await).await;
    let other = grant(
        post(
            &server,
            "token",
            Some(MALLORY),
            token_request(&[ClientId(9)]),
        )
        .await,
    )
    .await;
    // `anonymous:` and 32 hex digits of the SHA-256 of the key's bytes.
    let digest = {
        use base64::Engine;
        use sha2::Digest;
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(VICTIM)
            .unwrap();
        sha2::Sha256::digest(key)[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(own.user, format!("anonymous:{digest}"));
    assert_ne!(own.user, other.user);
    assert!(!own.user.contains(VICTIM), "the key itself is never shown");

    // Two clients of the crate, each with a key of its own, work side by side.
    let (first, second) = (
        crudp::Client::new(server.url()),
        crudp::Client::new(server.url()),
    );
    let (a, b) = tokio::join!(
        TodosClient::new(&first).create("first visitor".into()),
        TodosClient::new(&second).create("second visitor".into()),
    );
    assert_eq!(
        (a.unwrap().title, b.unwrap().title),
        ("first visitor".into(), "second visitor".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_share_the_queue_per_address_however_many_keys_they_make() {
    let server = Server::start_with(|b| {
        b.workers(4)
            .workers_per_user(1)
            .queue_per_user(2)
            .handler_timeout(Duration::from_secs(600))
    })
    .await;
    // Four visitors from 127.0.0.1, each a key and a client of its own: one runs (and waits at
    // the gate), two wait, and the fourth is over the address's share.
    let mut statuses = Vec::new();
    for n in 1..=4u64 {
        let key = format!("dmlzaXRvci1rZXkt{n}DAwMA");
        let body = batch_of(ClientId(0x100 + n), creates("gated visitor", [1]));
        statuses.push(
            post(&server, "sync", Some(&key), body)
                .await
                .status()
                .as_u16(),
        );
        if n == 1 {
            eventually("the first visitor's handler to run", || {
                server.store.at_gate.load(Ordering::SeqCst) == 1
            })
            .await;
        }
    }
    assert_eq!(statuses, [202, 202, 202, 503]);

    // A signed-in user has a share of its own.
    let ann = server.client_as("ann", "member");
    let todo = tokio::time::timeout(
        Duration::from_secs(60),
        TodosClient::new(&ann).create("ann meanwhile".into()),
    )
    .await
    .expect("ann is served");
    assert_eq!(todo.unwrap().title, "ann meanwhile");
    server.store.gate.add_permits(3);
    eventually("the visitors' three batches and ann's call", || {
        server.executions() == 4
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_of_one_address_share_the_rate_of_new_client_ids_however_many_keys_they_make() {
    use crudp::{
        protocol::TokenRequest,
        server::{MemoryOutcomes, OutcomeLimits},
    };
    let store = std::sync::Arc::new(MemoryOutcomes::new(
        OutcomeLimits::default().new_clients_per_minute(3),
    ));
    let server = Server::start_with(|b| b.outcome_store(std::sync::Arc::clone(&store))).await;
    let token = |client: u64| {
        postcard::to_stdvec(&TokenRequest {
            clients: vec![ClientId(client)],
        })
        .unwrap()
    };
    // Five visitors from 127.0.0.1, each a key of its own asking for a new client ID.
    let key = |n: u64| format!("cmF0ZS12aXNpdG9yLS0{n}MA");
    let mut statuses = Vec::new();
    for n in 1..=5 {
        let response = post(&server, "token", Some(&key(n)), token(0x200 + n)).await;
        statuses.push(response.status().as_u16());
        if n == 4 {
            assert_eq!(response.headers()["retry-after"], "60");
            assert!(response.text().await.unwrap().contains("3"));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // A client ID already granted is not new: its visitor goes on.
    let again = post(&server, "token", Some(&key(1)), token(0x201)).await;
    assert_eq!(again.status(), 200);
    // A signed-in user counts on its own.
    let ann = http_as("ann", "member")
        .post(format!("{}/token", server.url()))
        .header("content-type", "application/octet-stream")
        .body(token(0x300))
        .send()
        .await
        .unwrap();
    assert_eq!(ann.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_whose_address_changes_while_its_batches_wait_keeps_its_place() {
    let server = Server::start_with(|b| b.handler_timeout(Duration::from_secs(600))).await;
    let from = |last: u8| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(CLIENT_KEY_HEADER, VICTIM.parse().unwrap());
        reqwest::Client::builder()
            .default_headers(headers)
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .unwrap()
    };
    let sync = |http: reqwest::Client, body: Vec<u8>| {
        let url = format!("{}/sync", server.url());
        async move {
            let request = http
                .post(url)
                .header("content-type", "application/octet-stream");
            request.body(body).send().await.unwrap().status()
        }
    };
    // Its first batch runs (and waits at the gate); the next comes from another address (a
    // phone off Wi-Fi), and waits behind it.
    let client = ClientId(0x200);
    let first = sync(from(1), batch_of(client, creates("gated", [1]))).await;
    assert_eq!(first, 202);
    eventually("the first batch's handler to run", || {
        server.store.at_gate.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = sync(from(2), batch_of(client, creates("moved", [2]))).await;
    assert_eq!(second, 202);
    server.store.gate.add_permits(1);
    eventually("both batches", || server.executions() == 2).await;
    // And the queue still counts right: more batches of that client run.
    let third = sync(from(2), batch_of(client, creates("again", [3]))).await;
    assert_eq!(third, 202);
    eventually("the third batch", || server.executions() == 3).await;
}
