//! A token in a query string never reaches logs or traces, even at the `trace` level.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use crudp::ClientId;
use crudp_tests::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let server = Server::start().await;
    let token = server.token("ann", "admin", ClientId(3)).await;
    let spy = Spy::connect(
        format!("{}/events?token={token}&lastEventId=1", server.url()),
        None,
    )
    .await;
    spy.wait_for("ready", |e| e.iter().any(|e| e.event == "ready"))
        .await;
    let (body, _) = token.split_once('.').unwrap();
    let forged = format!("{body}.AAAA");
    let refused = reqwest::get(format!("{}/events?token={forged}", server.url()))
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let client = server.client_as("bob", "guest");
    TodosClient::new(&client)
        .create("logged call".into())
        .await
        .unwrap();
    drop(spy);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines().count() > 10,
        "the test must see the logs: {logs}"
    );
    assert!(!logs.contains(body), "a token reached the logs:\n{logs}");
    assert!(
        !logs.contains("token="),
        "a query string with a token reached the logs:\n{logs}"
    );
}
