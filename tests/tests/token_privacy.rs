//! A token in a query string never reaches logs or traces, even at the `trace` level.

#![cfg(not(target_arch = "wasm32"))]

use crudp::ClientId;
use crudp_tests::*;

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let capture = LogCapture::install("trace");

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

    let logs = capture.text();
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
