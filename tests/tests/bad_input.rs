//! Hostile bodies on `POST /call`: each gets a readable 400 (or 413), nothing panics or
//! allocates beyond the limits, and the server answers the next good request.

#![cfg(not(target_arch = "wasm32"))]

use crudp::{
    Action, ClientId,
    protocol::{Batch, PROTOCOL_VERSION, Packet, encode_batch},
};
use crudp_tests::*;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

fn good_batch() -> Vec<u8> {
    encode_batch(&Batch {
        version: PROTOCOL_VERSION,
        client: ClientId(42),
        packets: vec![Packet {
            seq: 1,
            handler: 7,
            action: Action::Read,
            args: postcard::to_stdvec(&("apple".to_owned(),)).unwrap().into(),
        }],
    })
}

/// The 4 GiB claims: a packet count and an args length of 2^32 - 1, as postcard varints.
fn huge_count() -> Vec<u8> {
    // version, client 42, one module (7), then the packet count.
    let mut body = vec![PROTOCOL_VERSION, 42, 1, 7];
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    body.extend_from_slice(&[1, 1, 1]);
    body
}

fn huge_args() -> Vec<u8> {
    // version, client 42, one module (7), one packet: seq 1, a long head, 64 + 1 (module 0,
    // action Read), args length 2^32 - 1.
    let mut body = vec![PROTOCOL_VERSION, 42, 1, 7, 1, 1, 65];
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    body.extend_from_slice(b"only a few bytes");
    body
}

async fn post(server: &Server, body: Vec<u8>) -> (u16, String) {
    let response = http()
        .post(format!("{}/call", server.url()))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn assert_still_serving(server: &Server) {
    let (status, _) = post(server, good_batch()).await;
    assert_eq!(status, 200, "the server must answer the next good request");
}

#[tokio::test]
async fn every_bad_body_gets_a_readable_400_and_the_server_goes_on() {
    let server = Server::start().await;
    let good = good_batch();
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    let mut unknown_version = good.clone();
    unknown_version[0] = 200;
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"garbage");
    // The call the batch follows must be one before its own.
    let mut late_after = good.clone();
    late_after.push(100);
    let mut random = vec![PROTOCOL_VERSION];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    random.extend((0..512).map(|_| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as u8
    }));

    let huge_seq = encode_batch(&Batch {
        version: PROTOCOL_VERSION,
        client: ClientId(42),
        packets: vec![Packet {
            seq: u64::MAX,
            handler: 7,
            action: Action::Read,
            args: postcard::to_stdvec(&("apple".to_owned(),)).unwrap().into(),
        }],
    });

    // A batch of a client that speaks the previous version of the protocol (an old page left
    // open across a deploy): the same call as version 2 wrote it (its head without a short
    // form: 1, module 0 and action Read).
    let mut old_client = vec![2, 42, 1, 7, 1, 1, 1, 6];
    old_client.extend_from_slice(b"\x05apple");

    let cases: [(&str, Vec<u8>, &str); 10] = [
        (
            "a version 2 batch",
            old_client,
            "unsupported protocol version 2: this side speaks version 3",
        ),
        ("empty body", Vec::new(), "empty body"),
        ("random bytes", random, "invalid batch"),
        ("truncated batch", truncated, "invalid batch"),
        ("4 GiB packet count", huge_count(), "4294967295"),
        ("4 GiB args length", huge_args(), "packet 0 is malformed"),
        (
            "unknown version",
            unknown_version,
            "unsupported protocol version 200",
        ),
        ("trailing garbage", trailing, "7 unexpected bytes"),
        (
            "an after not below the batch",
            late_after,
            "after is malformed: 100",
        ),
        ("sequence number 2^64 - 1", huge_seq, "is above the largest"),
    ];
    for (name, body, expected) in cases {
        let (status, message) = post(&server, body).await;
        assert_eq!(status, 400, "{name}: {message}");
        assert!(
            message.contains(expected),
            "{name}: {message:?} should mention {expected:?}"
        );
        assert_still_serving(&server).await;
    }
}

#[tokio::test]
async fn arguments_nested_too_deeply_are_rejected_and_the_server_goes_on() {
    let server = Server::start().await;
    // Each answer from a client of its own (a seq answered before is answered as it was).
    let search = |filter_bytes: Vec<u8>| {
        encode_batch(&Batch {
            version: PROTOCOL_VERSION,
            client: ClientId(43 + filter_bytes.len() as u64),
            packets: vec![Packet {
                seq: 1,
                handler: <SearchServer<Depth> as crudp::Module>::DESCRIPTOR.id,
                action: Action::Read,
                args: filter_bytes.into(),
            }],
        })
    };
    // `Not` (variant 1) `levels` times around `Eq("x")`: a byte a level.
    let nested = |levels: usize| {
        let mut bytes = vec![1; levels];
        bytes.extend([0, 1, b'x']);
        bytes
    };
    let outcome = |body: &[u8]| {
        let results = crudp::protocol::decode_results(&body.to_vec().into(), 10).unwrap();
        results.results.into_iter().next().unwrap().outcome
    };
    let url = format!("{}/call", server.url());
    let answer = |levels| {
        let url = url.clone();
        async move {
            let response = http()
                .post(url)
                .header("content-type", "application/octet-stream")
                .body(search(nested(levels)))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            outcome(&response.bytes().await.unwrap())
        }
    };
    assert_eq!(
        answer(100).await,
        crudp::Outcome::Ok(postcard::to_stdvec(&100u32).unwrap().into())
    );
    // Half a million levels would overflow the server's stack (and abort it) in postcard.
    let crudp::Outcome::Rejected { code, message } = answer(500_000).await else {
        panic!("a rejection")
    };
    assert_eq!(code, crudp::RejectCode::BadArguments);
    assert!(message.contains("deeper than 128"), "{message}");
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let server = Server::start_with(|b| b.max_body_bytes(1024)).await;
    let response = http()
        .post(format!("{}/call", server.url()))
        .header("content-type", "application/octet-stream")
        .body(vec![PROTOCOL_VERSION; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // The rest of the body was never read: the connection is not used for another request.
    assert_eq!(response.headers()["connection"], "close");
    let message = response.text().await.unwrap();
    assert!(message.contains("1024 bytes"), "{message}");
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn too_many_packets_get_400() {
    let server = Server::start_with(|b| b.max_packets(2)).await;
    let batch = Batch {
        version: PROTOCOL_VERSION,
        client: ClientId(1),
        packets: (1..=3)
            .map(|seq| Packet {
                seq,
                handler: 7,
                action: Action::Read,
                args: vec![0].into(),
            })
            .collect(),
    };
    let (status, message) = post(&server, encode_batch(&batch)).await;
    assert_eq!(status, 400);
    assert!(message.contains("at most 2"), "{message}");
    assert_still_serving(&server).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_4_gib_length_prefix_does_not_allocate() {
    let server = Server::start().await;
    assert_still_serving(&server).await;
    for body in [huge_count(), huge_args()] {
        // The server runs on this thread too (a current-thread runtime), so it is counted.
        let baseline = alloc::start();
        let (status, _) = post(&server, body).await;
        let grew = alloc::grown(baseline);
        assert_eq!(status, 400);
        assert!(
            grew < 4 << 20,
            "a 4 GiB claim made the process grow by {grew} bytes"
        );
    }
}

#[tokio::test]
async fn a_sequence_number_above_max_seq_gets_400() {
    let server = Server::start().await;
    let batch = Batch {
        version: PROTOCOL_VERSION,
        client: ClientId(3),
        packets: vec![Packet {
            seq: crudp::server::MAX_SEQ + 1,
            handler: 7,
            action: Action::Read,
            args: vec![0].into(),
        }],
    };
    let (status, message) = post(&server, encode_batch(&batch)).await;
    assert_eq!(status, 400);
    assert!(message.contains("above the largest"), "{message}");
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn a_token_request_for_no_client_or_too_many_gets_400() {
    use crudp::protocol::{MAX_TOKEN_CLIENTS, TokenRequest};
    let server = Server::start().await;
    let token = |clients: u64| {
        let body = postcard::to_stdvec(&TokenRequest {
            clients: (1..=clients).map(ClientId).collect(),
        })
        .unwrap();
        let request = http()
            .post(format!("{}/token", server.url()))
            .header("content-type", "application/octet-stream")
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    for clients in [0, MAX_TOKEN_CLIENTS as u64 + 1] {
        let (status, message) = token(clients).await;
        assert_eq!(status, 400, "{clients} clients: {message}");
        assert!(
            message.contains(&format!("it names {clients} clients")),
            "{message}"
        );
    }
    assert_eq!(token(MAX_TOKEN_CLIENTS as u64).await.0, 200);
    assert_still_serving(&server).await;
}
