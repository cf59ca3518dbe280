//! Server memory under an amplification flood and under client-ID churn, measured as the
//! bytes this test process holds: the server runs in it, and the flooding requests' own
//! buffers are freed before each settled reading.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crudp::{
    Action, ClientId, Module,
    server::{MemoryHub, MemoryOutcomes, OutcomeLimits},
};
use crudp_tests::{alloc, *};
use futures_util::{StreamExt, stream};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

const MIB: usize = 1 << 20;

/// The figures are the whole process's: one test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bytes held once they stop changing (the queue has drained).
async fn settled() -> usize {
    let mut last = alloc::live();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = alloc::live();
        if now.abs_diff(last) < 64 * 1024 {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amplification_flood_stays_within_the_byte_budgets() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const OUTCOMES: usize = 8 * MIB;
    const REPLAY: usize = 8 * MIB;
    const QUEUE: usize = 16 * MIB;
    let store = Arc::new(MemoryOutcomes::new(
        OutcomeLimits::default().total_bytes(OUTCOMES),
    ));
    let hub = Arc::new(MemoryHub::default().with_replay_bytes(REPLAY));
    let server = Server::start_with(|b| {
        b.outcome_store(Arc::clone(&store))
            .hub(Arc::clone(&hub))
            .queue_bytes(QUEUE)
    })
    .await;
    let url = server.url();
    let unmounted = UnmountedClient::DESCRIPTOR.id;
    let packets = |client: u64| {
        batch_of(
            ClientId(client),
            (1..=4096)
                .map(|seq| (seq, unmounted, Action::Create, vec![1]))
                .collect(),
        )
    };
    let base = settled().await;

    // 400 batches of 4,096 packets for a module the server does not mount, from 400 clients
    // of 20 users, 16 at a time; the peak is sampled while they run.
    const BATCHES: u64 = 400;
    let uploaded = BATCHES as usize * packets(0).len();
    let peak = Arc::new(AtomicUsize::new(0));
    let sampled = Arc::clone(&peak);
    let sampling = tokio::spawn(async move {
        loop {
            sampled.fetch_max(alloc::live(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let statuses: Vec<u16> = stream::iter(0..BATCHES)
        .map(|n| {
            let (url, body) = (url.clone(), packets(10_000 + n));
            async move { sync_raw(&url, &format!("user{}", n % 20), body).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let after = settled().await;
    sampling.abort();
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 503),
        "{statuses:?}"
    );
    let grown = after.saturating_sub(base);
    let peak = peak.load(Ordering::Relaxed).saturating_sub(base);
    eprintln!(
        "{accepted} of {BATCHES} batches accepted ({:.1} MB uploaded): the server held {:.1} MiB \
         more at the peak, {:.1} MiB after them; its outcomes hold {:.1} MiB",
        uploaded as f64 / 1e6,
        peak as f64 / MIB as f64,
        grown as f64 / MIB as f64,
        store.outcome_bytes() as f64 / MIB as f64,
    );
    assert!(accepted >= 100, "most batches run: {accepted}");
    assert!(store.outcome_bytes() <= OUTCOMES);
    assert!(hub.replay_bytes() <= REPLAY);

    assert!(
        grown <= OUTCOMES + REPLAY + 4 * MIB,
        "grew by {grown} bytes, beyond the outcome and replay budgets"
    );
    assert!(
        peak <= OUTCOMES + REPLAY + QUEUE + 24 * MIB,
        "peaked {peak} bytes above the start, beyond the budgets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_levels_off_under_client_id_churn() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let seconds: u64 = std::env::var("CRUDP_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    // The times are those of a server whose clients come and go every few seconds.
    let store = Arc::new(MemoryOutcomes::new(
        OutcomeLimits::default()
            .idle(Duration::from_secs(2))
            .ownership(Duration::from_secs(6))
            .new_clients_per_minute(100_000),
    ));
    let server = Server::start_with(|b| b.outcome_store(Arc::clone(&store))).await;
    let url = server.url();
    let reads = |client: u64| {
        batch_of(
            ClientId(client),
            (1..=8)
                .map(|seq| {
                    let sku = postcard::to_stdvec(&("apple".to_owned(),)).unwrap();
                    (seq, CatalogClient::DESCRIPTOR.id, Action::Read, sku)
                })
                .collect(),
        )
    };

    // Twenty new client IDs a second, of 50 users, each making one batch of 8 calls.
    let mut readings = Vec::new();
    let mut clients = Vec::new();
    let mut next = 1u64;
    for _ in 0..seconds {
        let second = tokio::time::Instant::now() + Duration::from_secs(1);
        let batch: Vec<u16> = stream::iter(next..next + 20)
            .map(|n| {
                let (url, body) = (url.clone(), reads(n));
                async move {
                    let (status, _) = call_raw(&url, &format!("user{}", n % 50), body).await;
                    status
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        assert!(batch.iter().all(|s| *s == 200), "{batch:?}");
        next += 20;
        tokio::time::sleep_until(second).await;
        readings.push(alloc::live());
        clients.push(store.clients());
    }
    let third = readings.len() / 3;
    let middle = readings[third..2 * third].iter().max().unwrap();
    let last = readings[2 * third..].iter().max().unwrap();
    eprintln!(
        "{} new client IDs in {seconds} s: held {:.2} MiB at most in the middle third, {:.2} MiB \
         in the last; clients remembered: {clients:?}",
        next - 1,
        *middle as f64 / MIB as f64,
        *last as f64 / MIB as f64,
    );
    assert!(
        *last <= middle + middle / 10 + 256 * 1024,
        "memory keeps growing: {readings:?}"
    );
    assert!(
        clients.iter().all(|c| *c <= 300),
        "only recently seen clients are remembered: {clients:?}"
    );
}
