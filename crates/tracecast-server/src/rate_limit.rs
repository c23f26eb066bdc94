//! Request rate limits (`[limits]` in the settings): token buckets per API key and per tenant,
//! one set for the ways in (`POST /api/v1/generations`, OTLP's `/v1/traces` and the gateway's
//! calls) and one for the management API. A request over a limit gets 429 with `Retry-After`
//! (whole seconds).
//!
//! Buckets are kept only for authenticated keys and their tenants, so their number is bounded
//! by the keys that exist; full buckets (idle callers) are dropped from time to time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::settings::Limits;

/// Which set of limits a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    Ingest,
    Api,
}

impl RateClass {
    /// The class of a request path (the full path, `/api/v1/...`): the ways generations come
    /// in are `Ingest`, everything else the management API.
    pub fn of_path(path: &str) -> RateClass {
        match path {
            "/api/v1/generations"
            | "/v1/traces"
            | "/api/v1/chat/completions"
            | "/api/v1/completions"
            | "/api/v1/responses"
            | "/api/v1/embeddings"
            | "/api/v1/models"
            | "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => RateClass::Ingest,
            _ => RateClass::Api,
        }
    }
}

/// A request refused by a rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// `per API key` or `per tenant`.
    pub scope: &'static str,
    /// Seconds until one more request is allowed (at least 1).
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per key of type `K`: `rate` tokens a second, at most `burst` banked.
struct Buckets<K> {
    rate: f64,
    burst: f64,
    state: Mutex<BucketMap<K>>,
}

struct BucketMap<K> {
    map: HashMap<K, Bucket>,
    /// Drop full buckets when the map reaches this size.
    prune_at: usize,
}

const MIN_PRUNE_AT: usize = 1024;

impl<K: std::hash::Hash + Eq> Buckets<K> {
    fn new(rate: f64, burst: u32) -> Self {
        Buckets {
            rate,
            burst: f64::from(burst.max(1)),
            state: Mutex::new(BucketMap {
                map: HashMap::new(),
                prune_at: MIN_PRUNE_AT,
            }),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.rate).min(self.burst)
    }

    /// Takes one token for `key`, or says how long until one is there.
    fn take(&self, key: K, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.map.len() >= st.prune_at {
            st.map.retain(|_, b| self.refilled(*b, now) < self.burst);
            st.prune_at = (st.map.len() * 2).max(MIN_PRUNE_AT);
        }
        let burst = self.burst;
        let b = st.map.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = self.refilled(*b, now);
        b.at = now;
        if tokens >= 1.0 {
            b.tokens = tokens - 1.0;
            Ok(())
        } else {
            b.tokens = tokens;
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

/// Every rate limit of the service.
pub struct RateLimiter {
    ingest_key: Buckets<String>,
    ingest_tenant: Buckets<Uuid>,
    api_key: Buckets<String>,
    api_tenant: Buckets<Uuid>,
}

impl RateLimiter {
    pub fn new(l: &Limits) -> Self {
        RateLimiter {
            ingest_key: Buckets::new(l.ingest_rate_per_key, l.ingest_burst_per_key),
            ingest_tenant: Buckets::new(l.ingest_rate_per_tenant, l.ingest_burst_per_tenant),
            api_key: Buckets::new(l.api_rate_per_key, l.api_burst_per_key),
            api_tenant: Buckets::new(l.api_rate_per_tenant, l.api_burst_per_tenant),
        }
    }

    /// Counts one request of `class` by the key whose hash is `key_hash`, of `tenant`.
    pub fn check(&self, class: RateClass, key_hash: &str, tenant: Uuid) -> Result<(), Limited> {
        self.check_at(class, key_hash, tenant, Instant::now())
    }

    fn check_at(
        &self,
        class: RateClass,
        key_hash: &str,
        tenant: Uuid,
        now: Instant,
    ) -> Result<(), Limited> {
        let (by_key, by_tenant) = match class {
            RateClass::Ingest => (&self.ingest_key, &self.ingest_tenant),
            RateClass::Api => (&self.api_key, &self.api_tenant),
        };
        let limited = |scope, wait: Duration| Limited {
            scope,
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        };
        by_key
            .take(key_hash.to_string(), now)
            .map_err(|w| limited("per API key", w))?;
        by_tenant
            .take(tenant, now)
            .map_err(|w| limited("per tenant", w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: u32) -> Limits {
        Limits {
            api_rate_per_key: rate,
            api_burst_per_key: burst,
            api_rate_per_tenant: 0.0,
            ..Limits::default()
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let r = RateLimiter::new(&limits(2.0, 3));
        let t = Uuid::now_v7();
        let now = Instant::now();
        for _ in 0..3 {
            r.check_at(RateClass::Api, "k", t, now).unwrap();
        }
        let e = r.check_at(RateClass::Api, "k", t, now).unwrap_err();
        assert_eq!(e.scope, "per API key");
        assert_eq!(e.retry_after_secs, 1);
        // Another key has its own bucket; ingest is another class.
        r.check_at(RateClass::Api, "other", t, now).unwrap();
        r.check_at(RateClass::Ingest, "k", t, now).unwrap();
        // Half a second at 2/s is one token.
        let later = now + Duration::from_millis(500);
        r.check_at(RateClass::Api, "k", t, later).unwrap();
        assert!(r.check_at(RateClass::Api, "k", t, later).is_err());
    }

    #[test]
    fn the_tenant_bucket_counts_every_key() {
        let l = Limits {
            api_rate_per_key: 0.0,
            api_rate_per_tenant: 1.0,
            api_burst_per_tenant: 2,
            ..Limits::default()
        };
        let r = RateLimiter::new(&l);
        let t = Uuid::now_v7();
        let now = Instant::now();
        r.check_at(RateClass::Api, "a", t, now).unwrap();
        r.check_at(RateClass::Api, "b", t, now).unwrap();
        let e = r.check_at(RateClass::Api, "c", t, now).unwrap_err();
        assert_eq!(e.scope, "per tenant");
        r.check_at(RateClass::Api, "a", Uuid::now_v7(), now)
            .unwrap();
    }

    #[test]
    fn a_rate_of_zero_is_off_and_idle_buckets_are_dropped() {
        let r = RateLimiter::new(&limits(0.0, 1));
        let t = Uuid::now_v7();
        let now = Instant::now();
        for _ in 0..100 {
            r.check_at(RateClass::Api, "k", t, now).unwrap();
        }
        let r = RateLimiter::new(&limits(1000.0, 1));
        for i in 0..3000 {
            r.check_at(RateClass::Api, &i.to_string(), t, now).unwrap();
        }
        // A second later the first 3,000 buckets are full again: the next prune drops them.
        let later = now + Duration::from_secs(1);
        for i in 0..1100 {
            r.check_at(RateClass::Api, &format!("later-{i}"), t, later)
                .unwrap();
        }
        let st = r.api_key.state.lock().unwrap();
        assert!(st.map.len() <= 1100, "{} buckets kept", st.map.len());
    }
}
