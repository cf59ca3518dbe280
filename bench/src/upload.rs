//! Upload throughput: a large file streamed in one `PUT` to CRUDP's `/upload/{id}` (digest
//! checked, parts written to `object_store`'s local file system store) and to a plain axum
//! handler that streams the body to a file, taking turns, with the server's memory sampled
//! meanwhile.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use sha2::Digest;

/// The pieces the sender streams it in.
const CHUNK: usize = 1 << 20;

/// The client key the uploads are made with: the bench's anonymous visitor.
const KEY: &str = "YmVuY2gtdmlzaXRvci0wMA";

/// One variant's runs: MB/s, and the server's peak resident memory during each, in bytes.
pub(crate) struct Runs {
    pub(crate) mb_per_s: Vec<f64>,
    pub(crate) peak_rss: Vec<u64>,
    pub(crate) rss_before: u64,
}

/// The variants, in the order of [`run`]'s answer.
pub(crate) const VARIANTS: [&str; 2] = ["plain axum to a file", "crudp `/upload/{id}`"];

/// Uploads `size` bytes (a multiple of 1 MiB) with each variant `reps` times, taking turns.
pub(crate) async fn run(base: &str, size: u64, reps: usize) -> [Runs; 2] {
    let chunk = Bytes::from(
        (0..CHUNK)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut hasher = sha2::Sha256::new();
    for _ in 0..size as usize / CHUNK {
        hasher.update(&chunk);
    }
    let sha: [u8; 32] = hasher.finalize().into();
    let sha = sha.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let http = reqwest::Client::new();
    let rss_before = rss(&http, base).await;
    let mut runs = [(); 2].map(|()| Runs {
        mb_per_s: Vec::new(),
        peak_rss: Vec::new(),
        rss_before,
    });
    for rep in 0..reps {
        for (variant, runs) in runs.iter_mut().enumerate() {
            let url = match variant {
                0 => format!("{base}/plain/upload"),
                _ => format!(
                    "{base}/crudp/upload/{:032x}?offset=0&size={size}&sha256={sha}",
                    rep + 1
                ),
            };
            let body = futures_util::stream::iter((0..size as usize / CHUNK).map({
                let chunk = chunk.clone();
                move |_| Ok::<_, std::io::Error>(chunk.clone())
            }));
            let peak = Arc::new(AtomicU64::new(0));
            let sampling =
                tokio::spawn(sample_rss(http.clone(), base.to_owned(), Arc::clone(&peak)));
            let started = Instant::now();
            let response = http
                .put(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(crudp::protocol::CLIENT_KEY_HEADER, KEY)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .expect("the server answers");
            assert!(
                response.status().is_success(),
                "{url}: {}",
                response.status()
            );
            let _ = response.bytes().await;
            let seconds = started.elapsed().as_secs_f64();
            sampling.abort();
            let after = rss(&http, base).await;
            runs.mb_per_s.push(size as f64 / 1e6 / seconds);
            runs.peak_rss.push(peak.load(Ordering::Relaxed).max(after));
            if variant == 1 {
                // Gives the quota back and the disk space.
                let _ = http
                    .delete(url.split('?').next().expect("a path"))
                    .header(crudp::protocol::CLIENT_KEY_HEADER, KEY)
                    .send()
                    .await;
            }
        }
    }
    runs
}

/// The server's resident memory now.
async fn rss(http: &reqwest::Client, base: &str) -> u64 {
    let text = http
        .get(format!("{base}/control/rss"))
        .send()
        .await
        .expect("the server answers")
        .text()
        .await
        .unwrap_or_default();
    text.trim().parse().unwrap_or(0)
}

/// Samples the server's resident memory into `peak` until aborted.
async fn sample_rss(http: reqwest::Client, base: String, peak: Arc<AtomicU64>) {
    loop {
        peak.fetch_max(rss(&http, &base).await, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
