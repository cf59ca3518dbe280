//! A 200 MB upload through a real server, measured as the bytes this test process holds: the
//! server streams the body to its store a part at a time, never holding the file.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crudp::files::{FileId, FileRef, UploadStatus};
use crudp_tests::{alloc, *};
use sha2::Digest;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

const MIB: usize = 1 << 20;
const SIZE: usize = 200 * 1000 * 1000;
const CHUNK: usize = 64 * 1024;

/// Chunk `i` of the file: made on the fly, so the sender holds one chunk at a time.
fn chunk(i: usize) -> Vec<u8> {
    let len = CHUNK.min(SIZE - i * CHUNK);
    (0..len).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_grows_the_server_by_less_than_32_mb() {
    let dir = std::env::temp_dir().join(format!("crudp-files-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = Server::start_with(|b| b.files_dir(&dir)).await;
    let chunks = SIZE.div_ceil(CHUNK);
    let mut hasher = sha2::Sha256::new();
    for i in 0..chunks {
        hasher.update(chunk(i));
    }
    let sha: [u8; 32] = hasher.finalize().into();
    let id = FileId(0x200);
    let hex = FileRef::uploaded(id, "", SIZE as u64, sha).sha256_hex();

    let baseline = alloc::live();
    let (peak, done) = (
        Arc::new(AtomicUsize::new(baseline)),
        Arc::new(AtomicBool::new(false)),
    );
    let sampler = tokio::spawn({
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(alloc::live(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let body = futures_util::stream::iter((0..chunks).map(|i| Ok::<_, std::io::Error>(chunk(i))));
    let response = http_as("ann", "user")
        .put(format!(
            "{}/upload/{id}?offset=0&size={SIZE}&sha256={hex}",
            server.url()
        ))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let status: UploadStatus = postcard::from_bytes(&response.bytes().await.unwrap()).unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    assert!(status.complete, "{status:?}");
    let grown = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "peak growth during a {SIZE}-byte upload: {:.1} MiB",
        grown as f64 / MIB as f64
    );
    assert!(grown < 32 * MIB, "the server grew by {grown} bytes");
    let _ = std::fs::remove_dir_all(&dir);
}
