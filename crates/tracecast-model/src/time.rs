//! Timestamps are RFC 3339 UTC strings with millisecond precision (`2026-09-05T08:24:27.107Z`),
//! the format OpenRouter's API returns. Strings sort chronologically, so stores keep them as text.

use chrono::{SecondsFormat, Utc};

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
