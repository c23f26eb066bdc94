//! tracecast's delivery engine.
//!
//! - [`queue`]: the durable log of generations per workspace and each destination's cursor.
//! - [`route`]: per destination, whether a generation goes there (switches, region, key
//!   allowlist, filter rules, deterministic sampling).
//! - [`delivery`]: one worker per destination: batching, retries with backoff, dead letters,
//!   pausing on rejected credentials.
//! - [`budget`]: the outage budget: how much log the backlogs may keep on disk, warnings before
//!   it is reached, and drops past it.
//! - [`engine`]: the workers kept in step with the store; ingest, status, replay, tests.
//! - [`history`]: each destination's recent activity per minute and its recent errors.
//! - [`cluster`]: many nodes on one NATS JetStream queue, each destination delivered by one.

pub mod budget;
pub mod cluster;
mod delivery;
pub mod engine;
pub mod history;
pub mod options;
pub mod queue;
pub mod route;

pub use cluster::ClusterOptions;
pub use delivery::Pause;
pub use engine::{DestinationStatus, Engine, EngineError, State, TestResult};
pub use history::HistorySnapshot;
pub use options::EngineOptions;
