//! A panicking handler is logged once per call, as a `tracing` error naming its module, action
//! and message, with a backtrace only if `RUST_BACKTRACE` asks for one; the process's own
//! panic hook hears of the other panics only.

#![cfg(not(target_arch = "wasm32"))]

use std::sync::atomic::{AtomicUsize, Ordering};

use crudp::{CallError, Client, RejectCode};
use crudp_tests::*;

static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_is_one_error_in_the_logs_and_nothing_from_the_panic_hook() {
    // The application's own hook, installed before the server is built.
    std::panic::set_hook(Box::new(|_| {
        HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    let capture = LogCapture::install("error");

    let server = Server::start().await;
    let client = Client::new(server.url());
    let fragile = FragileClient::new(&client);
    for _ in 0..3 {
        match fragile.delete("shattered glass".into()).await {
            Err(CallError::Rejected {
                code: RejectCode::Internal,
                ..
            }) => {}
            other => panic!("expected an internal rejection, got {other:?}"),
        }
    }
    assert_eq!(fragile.create().await, Ok(1), "the server keeps serving");

    let logs = capture.text();
    let panics: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("handler panicked: shattered glass"))
        .collect();
    assert_eq!(panics.len(), 3, "one error per call: {logs}");
    for line in &panics {
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains("module=\"Fragile\""), "{line}");
        assert!(line.contains("action=delete"), "{line}");
        assert!(line.contains("harness.rs"), "where it panicked: {line}");
    }
    let asked = std::env::var("RUST_BACKTRACE").is_ok_and(|v| v != "0")
        || std::env::var("RUST_LIB_BACKTRACE").is_ok_and(|v| v != "0");
    assert_eq!(
        logs.contains("backtrace="),
        asked,
        "a backtrace only when asked for: {logs}"
    );
    assert_eq!(
        HOOK_CALLS.load(Ordering::SeqCst),
        0,
        "the hook stayed quiet"
    );

    // Any other panic still reaches the application's hook.
    std::thread::spawn(|| panic!("not in a handler"))
        .join()
        .unwrap_err();
    assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 1);
}
