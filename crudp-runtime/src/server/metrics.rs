//! What the server measures, through the `metrics` crate's facade: nothing is recorded until
//! the application installs a recorder (say `metrics-exporter-prometheus`).
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `crudp_calls_total` | counter | `module`, `action`, `outcome` | calls run, by outcome (`ok`, `app_error`, `rejected`, `unavailable`, `expired`) |
//! | `crudp_call_duration_seconds` | histogram | `module`, `action` | a call's time in its layers and handler |
//! | `crudp_batch_packets` | histogram | | calls per batch received |
//! | `crudp_queue_depth` | gauge | | batches waiting for a worker |
//! | `crudp_event_streams` | gauge | | event streams and polls open |
//! | `crudp_replay_buffer_bytes` | gauge | | bytes of events the in-memory hub keeps for replay |
//! | `crudp_outcome_store_duration_seconds` | histogram | `operation` (`begin`, `finish`, `flush`) | the outcome store's time per batch step |

use std::time::Duration;

use crate::protocol::Action;

/// A call ran: its outcome and its time.
pub(crate) fn call(module: &'static str, action: Action, outcome: &'static str, took: Duration) {
    let action = action.as_str();
    metrics::counter!("crudp_calls_total", "module" => module, "action" => action, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("crudp_call_duration_seconds", "module" => module, "action" => action)
        .record(took.as_secs_f64());
}

/// A batch of `packets` calls arrived.
pub(crate) fn batch(packets: usize) {
    metrics::histogram!("crudp_batch_packets").record(packets as f64);
}

/// Batches waiting for a worker now.
pub(crate) fn queue_depth(waiting: usize) {
    metrics::gauge!("crudp_queue_depth").set(waiting as f64);
}

/// Event streams and polls open now.
pub(crate) fn event_streams(open: usize) {
    metrics::gauge!("crudp_event_streams").set(open as f64);
}

/// Bytes of events kept for replay now.
pub(crate) fn replay_bytes(bytes: usize) {
    metrics::gauge!("crudp_replay_buffer_bytes").set(bytes as f64);
}

/// One step of the outcome store took `took`.
pub(crate) fn outcome_store(operation: &'static str, took: Duration) {
    metrics::histogram!("crudp_outcome_store_duration_seconds", "operation" => operation)
        .record(took.as_secs_f64());
}
