//! What an operator sees: a span per batch and per call, with OpenTelemetry's RPC fields, and
//! the server's metrics through a Prometheus recorder.

#![cfg(not(target_arch = "wasm32"))]

use crudp_tests::{api::*, harness::*};

#[tokio::test]
async fn calls_leave_spans_and_metrics() {
    let logs = LogCapture::install_with_spans("crudp_runtime=info,crudp_client=info");
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let server = Server::start().await;
    let client = server.client_as("ann", "admin");
    let todos = TodosClient::new(&client);
    let (a, b) = tokio::join!(todos.create("milk".into()), todos.read(404));
    a.unwrap();
    b.unwrap_err();
    todos.create(String::new()).await.unwrap_err();
    // Asked to run later at its first attempt, it is counted as such, then as run.
    todos.create("busy".into()).await.unwrap();

    let text = logs.text();
    let call = text
        .lines()
        .find(|l| {
            l.contains("crudp.call{") && l.contains("rpc.method=create") && l.contains("close")
        })
        .unwrap_or_else(|| panic!("no span of the create call in:\n{text}"));
    for field in [
        "rpc.system=\"crudp\"",
        "rpc.service=\"Todos\"",
        "crudp.seq=1",
        "crudp.outcome=\"ok\"",
        "duration_ms=",
    ] {
        assert!(call.contains(field), "`{field}` missing from {call}");
    }
    assert!(
        text.lines().any(|l| l.contains("crudp.batch{")
            && l.contains("enduser.id=ann")
            && l.contains("crudp.packets=2")),
        "no span of the two-call batch in:\n{text}"
    );
    assert!(
        text.contains("rpc.method=read") && text.contains("crudp.outcome=\"app_error\""),
        "the failed read's span:\n{text}"
    );
    assert!(
        text.contains("crudp.outcome=\"unavailable\""),
        "the span of the call asked to run later:\n{text}"
    );
    assert!(
        text.contains("crudp.client.batch{"),
        "the client's span:\n{text}"
    );

    let rendered = metrics.render();
    for line in [
        "crudp_calls_total{module=\"Todos\",action=\"create\",outcome=\"ok\"} 2",
        "crudp_calls_total{module=\"Todos\",action=\"create\",outcome=\"app_error\"} 1",
        "crudp_calls_total{module=\"Todos\",action=\"create\",outcome=\"unavailable\"} 1",
        "crudp_calls_total{module=\"Todos\",action=\"read\",outcome=\"app_error\"} 1",
    ] {
        assert!(
            rendered.contains(line),
            "`{line}` missing from:\n{rendered}"
        );
    }
    for name in [
        "crudp_call_duration_seconds",
        "crudp_batch_packets",
        "crudp_queue_depth",
        "crudp_event_streams 1",
        "crudp_replay_buffer_bytes",
        "crudp_outcome_store_duration_seconds",
    ] {
        assert!(
            rendered.contains(name),
            "`{name}` missing from:\n{rendered}"
        );
    }
    for step in ["begin", "finish"] {
        assert!(
            rendered
                .lines()
                .any(|l| l.starts_with("crudp_outcome_store_duration_seconds")
                    && l.contains(&format!("operation=\"{step}\""))),
            "the store's `{step}` step missing from:\n{rendered}"
        );
    }
}
