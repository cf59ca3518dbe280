//! Files against a real server: uploads in pieces with progress, inline files, resuming after
//! a cut connection and after a restart, every kind of bad upload, expiry, and a call that
//! waits for its file.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use crudp::{
    CallError, Client, Mode, UploadProgress, UploadSource,
    files::{FileId, FileRef, UploadStatus},
};
use crudp_tests::*;
use sha2::Digest;

/// A fresh directory for a server's files.
fn files_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crudp-files-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `len` bytes that do not repeat in any short period.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// The files (not directories) under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}

/// `PUT /upload/{id}` of `body` at `offset` of a file of `size` bytes with digest `sha`, with
/// no content type: an upload's bytes need none.
async fn put(
    http: &reqwest::Client,
    server: &str,
    id: FileId,
    (offset, size, sha): (u64, u64, [u8; 32]),
    body: Vec<u8>,
) -> (u16, Result<UploadStatus, String>) {
    let sha = FileRef::uploaded(id, "", size, sha).sha256_hex();
    let response = http
        .put(format!(
            "{server}/upload/{id}?offset={offset}&size={size}&sha256={sha}"
        ))
        .body(body)
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn get(
    http: &reqwest::Client,
    server: &str,
    id: FileId,
) -> (u16, Result<UploadStatus, String>) {
    answer(
        http.get(format!("{server}/upload/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn answer(response: reqwest::Response) -> (u16, Result<UploadStatus, String>) {
    let status = response.status().as_u16();
    if status == 408 {
        // Given before the body was read to its end: the connection is not used again.
        assert_eq!(
            response.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "an answer given mid-body closes its connection"
        );
    }
    let body = response.bytes().await.unwrap();
    if status == 200 {
        (status, Ok(postcard::from_bytes(&body).unwrap()))
    } else {
        (status, Err(String::from_utf8_lossy(&body).into_owned()))
    }
}

fn status(received: u64, size: u64, complete: bool) -> Result<UploadStatus, String> {
    Ok(UploadStatus {
        received,
        size,
        complete,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_uploaded_in_pieces_reaches_the_handler_intact_with_progress() {
    let dir = files_dir("pieces");
    let server = Server::start_with(|b| b.files_dir(&dir)).await;
    let client = Client::builder(server.url()).mode(Mode::Call).build();
    let data = bytes((20 << 20) + 123, 1);
    let seen = Arc::new(Mutex::new(Vec::<UploadProgress>::new()));
    let sink = Arc::clone(&seen);
    // ANCHOR: upload
    let file = client
        .upload(UploadSource::bytes("big.bin", data.clone()))
        .on_progress(move |p| sink.lock().unwrap().push(p))
        .await
        .unwrap();
    // ANCHOR_END: upload
    assert_eq!(
        (file.name.as_str(), file.size),
        ("big.bin", data.len() as u64)
    );
    assert_eq!(file.sha256, sha256(&data));

    // ANCHOR: call
    let received = AttachmentsClient::new(&client).create(file).await.unwrap();
    // ANCHOR_END: call
    assert_eq!(
        received,
        Received {
            name: "big.bin".into(),
            size: data.len() as u64,
            sha256: sha256(&data),
        }
    );
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 3, "a report per piece: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0].sent <= w[1].sent), "{seen:?}");
    let total = data.len() as u64;
    assert_eq!(seen.last(), Some(&UploadProgress { sent: total, total }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_file_reaches_the_handler_the_same_way() {
    // Even a server that keeps no uploads reads files that came inside the batch.
    let server = Server::start().await;
    let client = Client::builder(server.url()).mode(Mode::Call).build();
    let data = bytes(100_000, 2);
    let received = AttachmentsClient::new(&client)
        .create(FileRef::inline("small.bin", data.clone()))
        .await
        .unwrap();
    assert_eq!(received.size, data.len() as u64);
    assert_eq!(received.sha256, sha256(&data));

    // A reference whose bytes are not what it claims (another upload's ID, another digest or
    // size) is refused: a handler that keeps the reference would keep a lie.
    let attachments = AttachmentsClient::new(&client);
    let forgeries = [
        |f: &mut FileRef| f.id = FileId(7),
        |f: &mut FileRef| f.sha256 = [0; 32],
        |f: &mut FileRef| f.size = 5,
    ];
    for forge in forgeries {
        let mut forged = FileRef::inline("small.bin", data.clone());
        forge(&mut forged);
        let refused = attachments.create(forged).await;
        let Err(CallError::App(message)) = refused else {
            panic!("refused, not {refused:?}")
        };
        assert!(message.contains("another size or digest"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_upload_gets_a_clear_answer_and_keeps_what_is_good() {
    let dir = files_dir("bad");
    let server =
        Server::start_with(|b| b.files_dir(&dir).max_file_bytes(1_000).upload_quota(1_500)).await;
    let url = server.url();
    let ann = http_as("ann", "user");
    let data = bytes(100, 3);
    let sha = sha256(&data);
    let whole = (0, 100, sha);

    // Not an ID, no query.
    let response = ann.get(format!("{url}/upload/xyz")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let response = ann
        .put(format!("{url}/upload/{}", FileId(1)))
        .body(vec![1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("offset=N&size=S&sha256=")
    );

    // Unknown uploads.
    let (code, message) = get(&ann, &url, FileId(2)).await;
    assert_eq!(code, 404, "{message:?}");
    let (code, message) = put(&ann, &url, FileId(2), (5, 100, sha), data[5..].to_vec()).await;
    assert_eq!(code, 409, "{message:?}");
    assert!(message.unwrap_err().contains("starts again at byte 0"));

    // Shorter than announced: kept, and goes on from where it stopped.
    let id = FileId(3);
    assert_eq!(
        put(&ann, &url, id, whole, data[..40].to_vec()).await,
        (200, status(40, 100, false))
    );
    let (code, message) = put(&ann, &url, id, (30, 100, sha), data[30..].to_vec()).await;
    assert_eq!(code, 409);
    assert!(message.unwrap_err().contains("goes on at byte 40"));
    assert_eq!(get(&ann, &url, id).await, (200, status(40, 100, false)));

    // Another user can neither read, write nor remove it.
    let bob = http_as("bob", "user");
    assert_eq!(get(&bob, &url, id).await.0, 403);
    assert_eq!(
        put(&bob, &url, id, (40, 100, sha), data[40..].to_vec())
            .await
            .0,
        403
    );
    let response = bob
        .delete(format!("{url}/upload/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Nor announce the same ID as another file.
    let (code, message) = put(&ann, &url, id, (40, 99, sha), data[40..99].to_vec()).await;
    assert_eq!(code, 409);
    assert!(message.unwrap_err().contains("a file ID names one file"));

    // Longer than announced: the file's own bytes are kept (and here complete it).
    let mut longer = data[40..].to_vec();
    longer.extend_from_slice(b"excess");
    let (code, message) = put(&ann, &url, id, (40, 100, sha), longer).await;
    assert_eq!(code, 413);
    assert!(
        message
            .unwrap_err()
            .contains("longer than the 100 bytes announced")
    );
    assert_eq!(get(&ann, &url, id).await, (200, status(100, 100, true)));
    // A complete upload answers its status to a repeated `PUT`.
    assert_eq!(
        put(&ann, &url, id, whole, data.clone()).await,
        (200, status(100, 100, true))
    );

    // A digest that does not match: discarded.
    let id = FileId(4);
    let (code, message) = put(&ann, &url, id, (0, 100, [7; 32]), data.clone()).await;
    assert_eq!(code, 422);
    assert!(message.unwrap_err().contains("do not match the SHA-256"));
    assert_eq!(get(&ann, &url, id).await.0, 404);

    // Too large for the server, then over the quota (100 bytes are ann's already).
    let (code, message) = put(&ann, &url, FileId(5), (0, 1_001, sha), vec![]).await;
    assert_eq!(code, 413);
    assert!(message.unwrap_err().contains("larger than the 1000 bytes"));
    let big = bytes(900, 5);
    let big_sha = sha256(&big);
    let (code, _) = put(&ann, &url, FileId(6), (0, 900, big_sha), big[..10].to_vec()).await;
    assert_eq!(code, 200);
    let (code, message) = put(&ann, &url, FileId(7), (0, 900, big_sha), vec![]).await;
    assert_eq!(code, 413);
    assert!(
        message
            .unwrap_err()
            .contains("does not fit the upload quota")
    );
    // Removing an upload gives its bytes back.
    let response = ann
        .delete(format!("{url}/upload/{}", FileId(6)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(get(&ann, &url, FileId(6)).await.0, 404);
    assert_eq!(
        put(&ann, &url, FileId(7), (0, 900, big_sha), big.clone()).await,
        (200, status(900, 900, true))
    );

    // A handler of another user cannot open ann's file.
    let file = FileRef::uploaded(FileId(3), "ann.bin", 100, sha);
    let as_bob = Client::builder(server.url())
        .transport(transport_as("bob", "user"))
        .mode(Mode::Call)
        .build();
    let opened = AttachmentsClient::new(&as_bob).create(file.clone()).await;
    assert!(
        matches!(&opened, Err(CallError::App(message)) if message.contains("another user")),
        "{opened:?}"
    );
    // A reference with another digest than the file's is refused too.
    let as_ann = Client::builder(server.url())
        .transport(transport_as("ann", "user"))
        .mode(Mode::Call)
        .build();
    let forged = FileRef::uploaded(FileId(3), "ann.bin", 100, [0; 32]);
    let opened = AttachmentsClient::new(&as_ann).create(forged).await;
    assert!(
        matches!(&opened, Err(CallError::App(m)) if m.contains("another size or digest")),
        "{opened:?}"
    );
    let opened = AttachmentsClient::new(&as_ann).create(file).await.unwrap();
    assert_eq!(opened.sha256, sha);

    // Nothing is left of the discarded and removed uploads.
    let kept: Vec<_> = files_under(&dir)
        .into_iter()
        .filter(|path| {
            [FileId(4), FileId(6)]
                .iter()
                .any(|id| path.to_string_lossy().contains(&id.to_string()))
        })
        .collect();
    assert_eq!(kept, Vec::<PathBuf>::new());
}

/// A `PUT` of upload `id` of `data` whose body stays open after its first 100 bytes, until
/// the test sends the rest; returns once the server holds it.
async fn held_open(
    http: &reqwest::Client,
    url: &str,
    id: FileId,
    data: &[u8],
) -> (
    futures_channel::mpsc::UnboundedSender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<(u16, Result<UploadStatus, String>)>,
) {
    let (tx, rx) = futures_channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(data[..100].to_vec())).unwrap();
    let size = data.len() as u64;
    let writer = tokio::spawn({
        let (http, url) = (http.clone(), url.to_owned());
        let sha = FileRef::uploaded(id, "", size, sha256(data)).sha256_hex();
        async move {
            let response = http
                .put(format!(
                    "{url}/upload/{id}?offset=0&size={size}&sha256={sha}"
                ))
                .header("content-type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(rx))
                .send()
                .await
                .unwrap();
            answer(response).await
        }
    });
    // It holds the upload once the upload exists: only it can have made it.
    for _ in 0..200 {
        if get(http, url, id).await.0 == 200 {
            return (tx, writer);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the writer of {id} did not begin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_keeps_at_most_max_files_per_user_uploads_however_small() {
    let dir = files_dir("count");
    let server = Server::start_with(|b| b.files_dir(&dir).max_files_per_user(2)).await;
    let url = server.url();
    let (ann, bob) = (http_as("ann", "user"), http_as("bob", "user"));
    let empty = sha256(&[]);
    for id in [FileId(21), FileId(22)] {
        assert_eq!(
            put(&ann, &url, id, (0, 0, empty), Vec::new()).await,
            (200, status(0, 0, true))
        );
    }
    let (code, message) = put(&ann, &url, FileId(23), (0, 0, empty), Vec::new()).await;
    assert_eq!(code, 413);
    assert!(message.unwrap_err().contains("2 uploads are kept"));
    // Another user counts on their own; a removed upload makes room.
    assert_eq!(
        put(&bob, &url, FileId(24), (0, 0, empty), Vec::new())
            .await
            .0,
        200
    );
    let removed = ann
        .delete(format!("{url}/upload/{}", FileId(21)))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(
        put(&ann, &url, FileId(23), (0, 0, empty), Vec::new()).await,
        (200, status(0, 0, true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused_while_the_first_writes() {
    let dir = files_dir("writers");
    let server = Server::start_with(|b| b.files_dir(&dir)).await;
    let url = server.url();
    let ann = http_as("ann", "user");
    let data = bytes(1_000, 6);
    let sha = sha256(&data);
    let id = FileId(8);
    let (rest, first) = held_open(&ann, &url, id, &data).await;
    let second = put(&ann, &url, id, (0, 1_000, sha), data.clone()).await;
    assert_eq!(second.0, 409, "{second:?}");
    assert!(second.1.unwrap_err().contains("one writer at a time"));
    // Nor removed while it is written: the writer would go on writing parts no record counts
    // (and the owner's quota would have them back).
    let removed = ann
        .delete(format!("{url}/upload/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 409);
    assert!(removed.text().await.unwrap().contains("being written"));
    rest.unbounded_send(Ok(data[100..].to_vec())).unwrap();
    drop(rest);
    assert_eq!(first.await.unwrap(), (200, status(1_000, 1_000, true)));
    // Once written, it can be.
    let removed = ann
        .delete(format!("{url}/upload/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(get(&ann, &url, id).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_written_at_once_are_capped_per_user_and_in_all() {
    let dir = files_dir("at-once");
    let server =
        Server::start_with(|b| b.files_dir(&dir).uploads_per_user(1).uploads_at_once(2)).await;
    let url = server.url();
    let (ann, bob, carol) = (
        http_as("ann", "user"),
        http_as("bob", "user"),
        http_as("carol", "user"),
    );
    let data = bytes(1_000, 14);
    let sha = sha256(&data);
    let (ann_rest, ann_first) = held_open(&ann, &url, FileId(30), &data).await;
    // Ann's second upload waits for her first; the answer says to try again.
    let response = ann
        .put(format!(
            "{url}/upload/{}?offset=0&size=1000&sha256={}",
            FileId(31),
            FileRef::uploaded(FileId(31), "", 1_000, sha).sha256_hex()
        ))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("the most one user may write at once")
    );
    // Bob writes beside her; with two writing, Carol waits too.
    let (bob_rest, bob_first) = held_open(&bob, &url, FileId(32), &data).await;
    let (code, message) = put(&carol, &url, FileId(33), (0, 1_000, sha), data.clone()).await;
    assert_eq!(code, 503, "{message:?}");
    assert!(
        message
            .unwrap_err()
            .contains("the most this server takes at once")
    );
    // Once they are done, the slots are free again.
    for (rest, first) in [(ann_rest, ann_first), (bob_rest, bob_first)] {
        rest.unbounded_send(Ok(data[100..].to_vec())).unwrap();
        drop(rest);
        assert_eq!(first.await.unwrap(), (200, status(1_000, 1_000, true)));
    }
    assert_eq!(
        put(&carol, &url, FileId(33), (0, 1_000, sha), data.clone()).await,
        (200, status(1_000, 1_000, true))
    );
    assert_eq!(
        put(&ann, &url, FileId(31), (0, 1_000, sha), data).await,
        (200, status(1_000, 1_000, true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_uploads_expire_and_leave_nothing_on_disk() {
    let dir = files_dir("expiry");
    let server =
        Server::start_with(|b| b.files_dir(&dir).upload_expiry(Duration::from_millis(300))).await;
    let url = server.url();
    let ann = http_as("ann", "user");
    let data = bytes(1_000, 7);
    let sha = sha256(&data);
    let (done, partial) = (FileId(9), FileId(10));
    assert_eq!(
        put(&ann, &url, done, (0, 1_000, sha), data.clone()).await.0,
        200
    );
    assert_eq!(
        put(&ann, &url, partial, (0, 1_000, sha), data[..10].to_vec())
            .await
            .0,
        200
    );
    let mut gone = false;
    for _ in 0..100 {
        if get(&ann, &url, partial).await.0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the incomplete upload expired");
    // The complete one stays; of the other, not a file is left.
    assert_eq!(
        get(&ann, &url, done).await,
        (200, status(1_000, 1_000, true))
    );
    let left: Vec<_> = files_under(&dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&partial.to_string()))
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new());
    assert!(!dir.join("uploads").join(partial.to_string()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_a_server_restart_goes_on_and_completes_with_the_right_digest() {
    let dir = files_dir("restart");
    let data = bytes((20 << 20) + 7, 8);
    let sha = sha256(&data);
    let id = FileId(0xfeed);
    let ann = http_as("ann", "user");
    {
        let server = Server::start_with(|b| b.files_dir(&dir)).await;
        let first = data[..9 << 20].to_vec();
        let (code, status) = put(&ann, &server.url(), id, (0, data.len() as u64, sha), first).await;
        assert_eq!(code, 200, "{status:?}");
    }
    // Another process on the same directory knows where to go on.
    let server = Server::start_with(|b| b.files_dir(&dir)).await;
    let url = server.url();
    let size = data.len() as u64;
    let (code, status) = get(&ann, &url, id).await;
    assert_eq!(code, 200);
    let received = status.unwrap().received;
    assert_eq!(received, 9 << 20);
    let rest = data[received as usize..].to_vec();
    assert_eq!(
        put(&ann, &url, id, (received, size, sha), rest).await,
        (
            200,
            Ok(UploadStatus {
                received: size,
                size,
                complete: true
            })
        )
    );
    let client = Client::builder(url)
        .transport(transport_as("ann", "user"))
        .mode(Mode::Call)
        .build();
    let file = FileRef::uploaded(id, "restart.bin", size, sha);
    let read = AttachmentsClient::new(&client).create(file).await.unwrap();
    assert_eq!((read.size, read.sha256), (size, sha));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_goes_on_after_its_connection_is_cut() {
    let dir = files_dir("cut");
    let server = Server::start_with(|b| b.files_dir(&dir)).await;
    let proxy = Arc::new(Proxy::start(server.addr).await);
    let client = Client::builder(proxy.url())
        .transport(transport_as("ann", "user"))
        .mode(Mode::Call)
        .build();
    let data = bytes(40 << 20, 9);
    let (cut, mut cuts) = tokio::sync::mpsc::unbounded_channel();
    let upload = client
        .upload(UploadSource::bytes("cut.bin", data.clone()))
        .on_progress(move |p| {
            let _ = cut.send(p.sent);
        });
    let upload = tokio::spawn(upload);
    // After the first piece, the connection goes down for a while.
    let first = cuts.recv().await.unwrap();
    assert!(first < data.len() as u64);
    proxy.down().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.up().await;
    let file = upload.await.unwrap().unwrap();
    assert_eq!(file.sha256, sha256(&data));
    let read = AttachmentsClient::new(&client).create(file).await.unwrap();
    assert_eq!(read.sha256, sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_s_upload_goes_on_across_a_server_restart() {
    let dir = files_dir("client-restart");
    let before = Server::start_with(|b| b.files_dir(&dir)).await;
    let mut proxy = Proxy::start(before.addr).await;
    let client = Client::builder(proxy.url())
        .transport(transport_as("ann", "user"))
        .mode(Mode::Call)
        .build();
    let data = bytes(40 << 20, 12);
    let (sent, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let upload = client
        .upload(UploadSource::bytes("restart.bin", data.clone()))
        .on_progress(move |p| {
            let _ = sent.send(p.sent);
        });
    let upload = tokio::spawn(upload);
    // After the first piece, the server goes away, connections and all, and another process
    // takes its place on the same directory.
    let first = progress.recv().await.unwrap();
    assert!(first < data.len() as u64);
    proxy.down().await;
    drop(before);
    let after = Server::start_with(|b| b.files_dir(&dir)).await;
    proxy.retarget(after.addr);
    proxy.up().await;
    let file = tokio::time::timeout(Duration::from_secs(60), upload)
        .await
        .expect("the upload went on")
        .unwrap()
        .unwrap();
    assert_eq!(file.sha256, sha256(&data));
    // It went on from what the first server had kept, not from the start.
    while let Ok(sent) = progress.try_recv() {
        assert!(sent >= first, "went back to {sent} after {first}");
    }
    // The new server checked the digest over the parts both wrote, and its handler reads them.
    let read = AttachmentsClient::new(&client).create(file).await.unwrap();
    assert_eq!((read.size, read.sha256), (data.len() as u64, sha256(&data)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_before_its_file_is_uploaded_runs_once_the_file_is_complete() {
    let dir = files_dir("waits");
    let server = Server::start_with(|b| b.files_dir(&dir)).await;
    let url = server.url();
    let client = Client::builder(url.clone())
        .transport(transport_as("ann", "user"))
        .mode(Mode::Call)
        .build();
    let data = bytes(5_000, 10);
    let sha = sha256(&data);
    let id = FileId(0xabc);
    let size = data.len() as u64;
    let ann = http_as("ann", "user");
    assert_eq!(
        put(&ann, &url, id, (0, size, sha), data[..1_000].to_vec())
            .await
            .0,
        200
    );
    // The seeds' order: the call with the file's reference first, the bytes after.
    let call =
        AttachmentsClient::new(&client).create(FileRef::uploaded(id, "later.bin", size, sha));
    let call = tokio::spawn(call);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "the call waits for its file");
    assert_eq!(
        put(&ann, &url, id, (1_000, size, sha), data[1_000..].to_vec())
            .await
            .0,
        200
    );
    client.sync();
    let read = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call ran once the file was complete")
        .unwrap()
        .unwrap();
    assert_eq!((read.size, read.sha256), (size, sha));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_let_go_for_its_silence_does_not_replace_a_part_another_server_wrote() {
    let dir = files_dir("shared-timeout");
    let a = Server::start_with(|b| b.files_dir(&dir).body_timeout(Duration::from_secs(1))).await;
    let b = Server::start_with(|b| b.files_dir(&dir)).await;
    let ann = http_as("ann", "user");
    let data = bytes(1_000, 13);
    let (sha, size) = (sha256(&data), data.len() as u64);
    let id = FileId(0x5a60);
    // A holds the first 100 bytes in memory, waiting for more; the client has gone on at B.
    let (rest, silent) = held_open(&ann, &a.url(), id, &data).await;
    assert_eq!(
        put(&ann, &b.url(), id, (0, size, sha), data.clone()).await,
        (200, status(size, size, true))
    );
    // A lets its request go: its 100 bytes must not become the part at offset 0.
    assert_eq!(silent.await.unwrap().0, 408);
    drop(rest);
    let client = Client::builder(b.url())
        .transport(transport_as("ann", "user"))
        .mode(Mode::Call)
        .build();
    let read = AttachmentsClient::new(&client)
        .create(FileRef::uploaded(id, "f", size, sha))
        .await
        .unwrap();
    assert_eq!((read.size, read.sha256), (size, sha));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_does_not_expire_an_upload_another_server_completed() {
    let dir = files_dir("shared-expiry");
    let expiry = Duration::from_millis(300);
    let a = Server::start_with(|b| b.files_dir(&dir).upload_expiry(expiry)).await;
    let b = Server::start_with(|b| b.files_dir(&dir)).await;
    let ann = http_as("ann", "user");
    let data = bytes(2_000, 12);
    let (sha, size) = (sha256(&data), data.len() as u64);
    let id = FileId(0x5a5f);
    let first = data[..1_000].to_vec();
    assert_eq!(put(&ann, &a.url(), id, (0, size, sha), first).await.0, 200);
    let rest = data[1_000..].to_vec();
    assert_eq!(
        put(&ann, &b.url(), id, (1_000, size, sha), rest).await,
        (200, status(size, size, true))
    );
    // A's own record still says incomplete, and it is older than A's expiry: A sweeps it a few
    // times over, and must read the store first.
    tokio::time::sleep(expiry * 4).await;
    assert_eq!(
        get(&ann, &b.url(), id).await,
        (200, status(size, size, true))
    );
    let parts = files_under(&dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&id.to_string()))
        .count();
    assert!(
        parts >= 2,
        "the record and its parts are kept ({parts} files)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_share_a_store_carry_on_each_other_s_uploads() {
    let dir = files_dir("shared");
    let a = Server::start_with(|b| b.files_dir(&dir)).await;
    let b = Server::start_with(|b| b.files_dir(&dir)).await;
    let ann = http_as("ann", "user");
    let data = bytes(3_000, 11);
    let (sha, size) = (sha256(&data), data.len() as u64);
    let id = FileId(0x5a5e);
    // Both know of the store before the upload starts.
    assert_eq!(get(&ann, &a.url(), id).await.0, 404);
    assert_eq!(get(&ann, &b.url(), id).await.0, 404);
    let first = data[..1_000].to_vec();
    assert_eq!(
        put(&ann, &a.url(), id, (0, size, sha), first).await,
        (200, status(1_000, size, false))
    );
    assert_eq!(
        get(&ann, &b.url(), id).await,
        (200, status(1_000, size, false))
    );
    let rest = data[1_000..].to_vec();
    assert_eq!(
        put(&ann, &b.url(), id, (1_000, size, sha), rest).await,
        (200, status(size, size, true))
    );
    // The first server opens what the second completed.
    let client = Client::builder(a.url())
        .transport(transport_as("ann", "user"))
        .mode(Mode::Call)
        .build();
    let file = FileRef::uploaded(id, "shared.bin", size, sha);
    let read = AttachmentsClient::new(&client).create(file).await.unwrap();
    assert_eq!((read.size, read.sha256), (size, sha));
    assert_eq!(
        get(&ann, &a.url(), id).await,
        (200, status(size, size, true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visitors_share_an_upload_quota_per_address() {
    let dir = files_dir("anonymous");
    let server = Server::start_with(|b| b.files_dir(&dir).upload_quota(1_500)).await;
    let url = server.url();
    let data = bytes(1_000, 13);
    let sha = sha256(&data);
    // Two keys, so two visitors, but one address: new keys buy no new quota.
    let (first, second) = (
        http_keyed("Zmlyc3QtdmlzaXRvci1rZXk"),
        http_keyed("c2Vjb25kLXZpc2l0b3Ita2V5"),
    );
    assert_eq!(
        put(&first, &url, FileId(20), (0, 1_000, sha), data.clone())
            .await
            .0,
        200
    );
    let (code, message) = put(&second, &url, FileId(21), (0, 1_000, sha), data.clone()).await;
    assert_eq!(code, 413, "{message:?}");
    assert!(
        message
            .unwrap_err()
            .contains("1000 of 1500 bytes are taken")
    );
    // The second may not touch the first's upload either.
    assert_eq!(get(&second, &url, FileId(20)).await.0, 403);
    // A signed-in user has a quota of their own.
    let ann = http_as("ann", "user");
    assert_eq!(
        put(&ann, &url, FileId(22), (0, 1_000, sha), data).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_trickles_is_let_go_its_slot_freed_and_what_arrived_kept() {
    let dir = files_dir("trickle");
    let server = Server::start_with(|b| {
        b.files_dir(&dir)
            .uploads_per_user(1)
            .body_timeout(Duration::from_secs(1))
    })
    .await;
    let url = server.url();
    let ann = http_as("ann", "user");
    let data = bytes(1_000, 21);
    let sha = sha256(&data);
    let id = FileId(40);
    let (rest, first) = held_open(&ann, &url, id, &data).await;
    // A byte every 100 ms: never a second without one, but far under the least rate.
    let trickle = tokio::spawn({
        let data = data.clone();
        async move {
            for byte in &data[100..] {
                if rest.unbounded_send(Ok(vec![*byte])).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let (code, message) = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("a trickling upload is let go")
        .unwrap();
    trickle.abort();
    assert_eq!(code, 408, "{message:?}");
    assert!(
        message.unwrap_err().contains("bytes a second"),
        "the answer says why"
    );
    // Its writer's slot is free, and the bytes that arrived are kept: the rest goes on from
    // there.
    let (code, kept) = get(&ann, &url, id).await;
    assert_eq!(code, 200, "{kept:?}");
    let received = kept.unwrap().received;
    assert!(received >= 100, "kept {received} bytes");
    assert_eq!(
        put(
            &ann,
            &url,
            id,
            (received, 1_000, sha),
            data[received as usize..].to_vec()
        )
        .await,
        (200, status(1_000, 1_000, true))
    );
}
