//! Capture: every gateway call becomes one generation record, appended through the same engine
//! path as `POST /api/v1/generations` (same validation, dedup and durability).
//!
//! Capture is off the response path: the proxy hands a finished record to a bounded channel
//! with `try_send` and never waits. A full channel drops the record, counts it in
//! `tracecast_gateway_capture_dropped_total` and logs a warning. One task drains the channel
//! in batches and appends each batch with one queue write.

use std::collections::HashMap;

use serde_json::Value;
use tokio::sync::mpsc;
use tracecast_model::generation::{Generation, Identity, IngestContext};
use uuid::Uuid;

use crate::state::AppState;

/// The most records appended with one queue write.
const BATCH: usize = 256;

/// A finished call, ready to be ingested.
pub struct Captured {
    pub workspace: Uuid,
    pub api_key_hash: String,
    pub api_key_name: String,
    /// The record, in the generation shape of `docs/generation.md`.
    pub record: Value,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Capturer {
    tx: mpsc::Sender<Captured>,
}

impl Capturer {
    /// Starts the capture task; it ends once every `Capturer` is dropped and the channel is
    /// drained.
    pub fn start(state: AppState, capacity: usize) -> Capturer {
        let (tx, rx) = mpsc::channel(capacity);
        tokio::spawn(run(state, rx));
        Capturer { tx }
    }

    /// Hands a record to the capture task without waiting.
    pub fn submit(&self, c: Captured) {
        if let Err(e) = self.tx.try_send(c) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "full",
                mpsc::error::TrySendError::Closed(_) => "closed",
            };
            metrics::counter!("tracecast_gateway_capture_dropped_total", "reason" => reason)
                .increment(1);
            tracing::warn!(
                reason,
                "gateway capture queue cannot take a record; the generation is dropped"
            );
        }
    }
}

async fn run(state: AppState, mut rx: mpsc::Receiver<Captured>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut by_workspace: HashMap<Uuid, (Vec<Generation>, Vec<Vec<u8>>)> = HashMap::new();
        for c in batch.drain(..) {
            if let Some((g, raw)) = to_generation(
                c.record,
                identity(&c.workspace, c.api_key_hash, c.api_key_name),
            ) {
                let (gens, raws) = by_workspace.entry(c.workspace).or_default();
                gens.push(g);
                raws.push(raw);
            }
        }
        for (ws, (gens, raws)) in by_workspace {
            let n = gens.len() as u64;
            let records = gens
                .into_iter()
                .zip(raws.iter().map(Vec::as_slice))
                .collect();
            match state.engine.ingest(ws, records, None).await {
                Ok(_) => {
                    metrics::counter!("tracecast_gateway_captured_total").increment(n);
                }
                Err(e) => {
                    metrics::counter!("tracecast_gateway_capture_failed_total").increment(n);
                    tracing::error!(error = %e, workspace = %ws, records = n, "gateway capture could not be queued");
                }
            }
        }
    }
}

/// Validates the record as ingest does and sets the caller's identity. A record the parser
/// rejects (a caller's `trace` that breaks its rules, say) is retried without the caller's
/// attribution fields, so the call is still recorded.
/// Returns the generation and the record bytes it was parsed from (what the queue stores).
fn to_generation(record: Value, identity: Identity) -> Option<(Generation, Vec<u8>)> {
    let ctx = IngestContext::default();
    // Serialised first, so that the record can be handed to the parser without a copy.
    let raw = serde_json::to_vec(&record).unwrap_or_default();
    let (mut g, raw) = match Generation::from_json(record, &ctx) {
        Ok(g) => (g, raw),
        Err(first) => {
            let mut stripped: Value = serde_json::from_slice(&raw).unwrap_or_default();
            if let Some(req) = stripped.get_mut("request").and_then(Value::as_object_mut) {
                for k in ["trace", "user", "session_id"] {
                    req.remove(k);
                }
            }
            let raw = serde_json::to_vec(&stripped).unwrap_or_default();
            match Generation::from_json(stripped, &ctx) {
                Ok(g) => {
                    tracing::warn!(error = %first, "gateway capture: the caller's attribution fields are invalid; recorded without them");
                    (g, raw)
                }
                Err(e) => {
                    metrics::counter!("tracecast_gateway_capture_invalid_total").increment(1);
                    tracing::error!(error = %e, "gateway capture: the record is invalid; dropped");
                    return None;
                }
            }
        }
    };
    g.identity = identity;
    Some((g, raw))
}

fn identity(workspace: &Uuid, hash: String, name: String) -> Identity {
    Identity {
        workspace_id: workspace.to_string(),
        api_key_hash: Some(hash),
        api_key_name: Some(name),
    }
}
