//! Delivery settings. Defaults are the documented behaviour; every field can be set in
//! `tracecast.toml` under `[delivery]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineOptions {
    /// A batch is sent when it holds this many traces (capped by the platform's own limit).
    pub batch_max_items: usize,
    /// ... or this many bytes of encoded payload (capped by the platform's own limit).
    pub batch_max_bytes: usize,
    /// ... or when its first trace has waited this long (milliseconds, at most 1000).
    pub linger_ms: u64,
    /// Requests in flight per destination, retries included.
    pub concurrency: usize,
    /// Timeout of one delivery request (seconds).
    pub request_timeout_secs: u64,
    /// First retry delay bound (milliseconds); each retry doubles it, with full jitter.
    pub retry_base_ms: u64,
    /// Largest retry delay (seconds).
    pub retry_max_delay_secs: u64,
    /// A batch is dead-lettered after this many failed attempts ...
    pub max_attempts: u32,
    /// ... or this long after its first failure (seconds).
    pub max_retry_age_secs: u64,
    /// While paused for rejected credentials, a probe resends every this many seconds.
    pub auth_probe_secs: u64,
    /// Backlog cap per destination in records; past it the oldest are dropped and counted.
    pub max_backlog_records: u64,
    /// Backlog cap per destination in bytes.
    pub max_backlog_bytes: u64,
    /// Dead letters are kept this long (seconds).
    pub dead_letter_retention_secs: u64,
    /// Destinations are re-read from the store this often (milliseconds); API changes on this
    /// node apply at once.
    pub config_refresh_ms: u64,
    /// Base URLs replacing a platform's fixed endpoint, by destination type (`opik`,
    /// `newrelic`, `snowflake`, ...): for self-hosted platforms, egress proxies and tests.
    pub endpoint_overrides: std::collections::BTreeMap<String, String>,
    /// What destinations may connect to: the server sets it from its `[egress]` settings.
    #[serde(skip)]
    pub egress: tracecast_exporters::egress::EgressPolicy,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            batch_max_items: 500,
            batch_max_bytes: 4 * 1024 * 1024,
            linger_ms: 200,
            concurrency: 4,
            request_timeout_secs: 30,
            retry_base_ms: 1000,
            retry_max_delay_secs: 300,
            max_attempts: 30,
            max_retry_age_secs: 24 * 3600,
            auth_probe_secs: 180,
            max_backlog_records: 1_000_000,
            max_backlog_bytes: 1 << 30,
            dead_letter_retention_secs: 7 * 24 * 3600,
            config_refresh_ms: 2000,
            endpoint_overrides: Default::default(),
            egress: Default::default(),
        }
    }
}

impl EngineOptions {
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms.min(1000))
    }

    /// The delay before retry number `attempt` (1-based): full jitter over an exponentially
    /// growing bound, but never less than the platform's `Retry-After`.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let cap = Duration::from_secs(self.retry_max_delay_secs);
        let exp = attempt.saturating_sub(1).min(30);
        let bound = Duration::from_millis(self.retry_base_ms.saturating_mul(1u64 << exp)).min(cap);
        let jittered = bound.mul_f64(rand::random::<f64>());
        match retry_after {
            Some(ra) => ra.min(Duration::from_secs(3600)).max(jittered),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let o = EngineOptions::default();
        for attempt in 1..40 {
            let d = o.backoff(attempt, None);
            assert!(d <= Duration::from_secs(300));
            let bound = Duration::from_millis(1000u64.saturating_mul(1 << (attempt - 1).min(30)))
                .min(Duration::from_secs(300));
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
        }
        assert!(o.backoff(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
    }
}
