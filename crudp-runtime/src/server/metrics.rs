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

/// The calls of one batch, counted together when it ends: the label sets are built once per
/// kind of call in the batch, not once per call.
#[derive(Default)]
pub(crate) struct Calls {
    kinds: Vec<CallKind>,
}

struct CallKind {
    module: &'static str,
    action: Action,
    outcome: &'static str,
    /// Each call's time, in seconds.
    took: Vec<f64>,
}

impl Calls {
    /// A call ran: its outcome and its time.
    pub(crate) fn add(
        &mut self,
        module: &'static str,
        action: Action,
        outcome: &'static str,
        took: Duration,
    ) {
        let took = took.as_secs_f64();
        match self
            .kinds
            .iter_mut()
            .find(|k| k.action == action && k.outcome == outcome && k.module == module)
        {
            Some(kind) => kind.took.push(took),
            None => self.kinds.push(CallKind {
                module,
                action,
                outcome,
                took: vec![took],
            }),
        }
    }

    /// Records the calls counted.
    pub(crate) fn record(self) {
        for kind in self.kinds {
            let (module, action) = (kind.module, kind.action.as_str());
            metrics::counter!("crudp_calls_total", "module" => module, "action" => action, "outcome" => kind.outcome)
                .increment(kind.took.len() as u64);
            let histogram = metrics::histogram!("crudp_call_duration_seconds", "module" => module, "action" => action);
            for took in kind.took {
                histogram.record(took);
            }
        }
    }
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

/// A step of the outcome store, as labelled.
#[derive(Clone, Copy)]
pub(crate) enum StoreStep {
    Begin,
    Finish,
    Flush,
}

/// One step of the outcome store took `took`. Each label is written out, so that each key is
/// a static one, not built and hashed per batch.
pub(crate) fn outcome_store(step: StoreStep, took: Duration) {
    let histogram = match step {
        StoreStep::Begin => {
            metrics::histogram!("crudp_outcome_store_duration_seconds", "operation" => "begin")
        }
        StoreStep::Finish => {
            metrics::histogram!("crudp_outcome_store_duration_seconds", "operation" => "finish")
        }
        StoreStep::Flush => {
            metrics::histogram!("crudp_outcome_store_duration_seconds", "operation" => "flush")
        }
    };
    histogram.record(took.as_secs_f64());
}
