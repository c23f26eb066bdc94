//! Delivery settings. Defaults are the documented behaviour; every field can be set in
//! `tracecast.toml` under `[delivery]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    /// The outage budget: how many bytes of log the backlogs may keep on disk, all workspaces
    /// together, as a share of the space the queue's file system has for it (`"50%"`, the
    /// default: half of its free space plus what the queue already takes) or as a size
    /// (`"20GiB"`, `"500MB"`, or a number of bytes). Past it, the oldest records of the
    /// destinations furthest behind are dropped and counted (see [`crate::budget`]).
    pub backlog_budget: Amount,
    /// The fixed byte cap this budget replaced; when set, it is the budget (see
    /// [`EngineOptions::budget`]), so configurations written for it keep their meaning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backlog_bytes: Option<u64>,
    /// Free space the backlogs always leave on the queue's file system, whatever the budget:
    /// a share of the file system's size (`"5%"`, the default) or a size.
    pub backlog_min_free: Amount,
    /// An optional cap on each destination's backlog in records (none by default).
    pub max_backlog_records: Option<u64>,
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
            backlog_budget: Amount::Share(0.5),
            max_backlog_bytes: None,
            backlog_min_free: Amount::Share(0.05),
            max_backlog_records: None,
            dead_letter_retention_secs: 7 * 24 * 3600,
            config_refresh_ms: 2000,
            endpoint_overrides: Default::default(),
            egress: Default::default(),
        }
    }
}

impl EngineOptions {
    /// The outage budget: `max_backlog_bytes` when set, else `backlog_budget`.
    pub fn budget(&self) -> Amount {
        self.max_backlog_bytes
            .map_or(self.backlog_budget, Amount::Bytes)
    }

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

/// A number of bytes, or a share of something (`"50%"`): how the outage budget and the free
/// space it leaves are set. In a config file or the environment: a percentage (`"50%"`, more
/// than 0 and at most 100), a size with a unit (`"20GiB"`, `"1.5 GB"`, `"500MB"`, `"64KiB"`;
/// `kB`, `MB`, `GB`, `TB` are powers of 1000, `KiB`, `MiB`, `GiB`, `TiB` of 1024), or a plain
/// number of bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Bytes(u64),
    /// A fraction in (0, 1].
    Share(f64),
}

impl Amount {
    /// Parses the forms listed on [`Amount`]; the error says what was wrong.
    pub fn parse(s: &str) -> Result<Amount, String> {
        let t = s.trim();
        if let Some(pct) = t.strip_suffix('%') {
            let p: f64 = pct
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage such as \"50%\""))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "{s:?}: a percentage must be more than 0% and at most 100%"
                ));
            }
            return Ok(Amount::Share(p / 100.0));
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || {
            format!(
                "{s:?} is not a size: use a number of bytes, a size such as \"20GiB\" or \"500MB\", or a percentage such as \"50%\""
            )
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" | "k" => 1e3,
            "mb" | "m" => 1e6,
            "gb" | "g" => 1e9,
            "tb" | "t" => 1e12,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(bad()),
        };
        let bytes = n * mult;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Amount::Bytes(bytes.round() as u64))
    }

    /// The amount in bytes, a share taken of `whole`.
    pub fn of(self, whole: u64) -> u64 {
        match self {
            Amount::Bytes(n) => n,
            Amount::Share(f) => (whole as f64 * f) as u64,
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Bytes(n) => write!(f, "{n}"),
            Amount::Share(s) => write!(f, "{}%", s * 100.0),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Bytes(n) => s.serialize_u64(*n),
            Amount::Share(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a number of bytes, a size such as \"20GiB\", or a percentage such as \"50%\"",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount::Bytes(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
                u64::try_from(v)
                    .map(Amount::Bytes)
                    .map_err(|_| E::custom(format!("{v} is negative: a size must be at least 0")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
                Amount::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_sizes_and_shares() {
        assert_eq!(Amount::parse("50%"), Ok(Amount::Share(0.5)));
        assert_eq!(Amount::parse(" 2.5 % "), Ok(Amount::Share(0.025)));
        assert_eq!(Amount::parse("20GiB"), Ok(Amount::Bytes(20 << 30)));
        assert_eq!(Amount::parse("1.5 GB"), Ok(Amount::Bytes(1_500_000_000)));
        assert_eq!(Amount::parse("500mb"), Ok(Amount::Bytes(500_000_000)));
        assert_eq!(Amount::parse("64KiB"), Ok(Amount::Bytes(65536)));
        assert_eq!(Amount::parse("1073741824"), Ok(Amount::Bytes(1 << 30)));
        for bad in [
            "",
            "%",
            "0%",
            "101%",
            "-5%",
            "abc",
            "5 parsecs",
            "1e400GB",
            "GiB",
        ] {
            let e = Amount::parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert_eq!(Amount::Share(0.5).of(1000), 500);
        assert_eq!(Amount::Bytes(7).of(1000), 7);
        // Settings serialise and read back (the defaults go through figment this way).
        for a in [Amount::Share(0.05), Amount::Bytes(123)] {
            let v = serde_json::to_value(a).unwrap();
            assert_eq!(serde_json::from_value::<Amount>(v).unwrap(), a);
        }
        assert!(serde_json::from_value::<Amount>(serde_json::json!(-1)).is_err());
    }

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
