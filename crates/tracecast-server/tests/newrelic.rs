//! `newrelic` end to end: the real server delivers to a loopback receiver playing New Relic
//! (OTLP/HTTP protobuf with the `api-key` header, through the `newrelic` endpoint override): delivery with the platform's credentials, privacy mode, 429 with Retry-After,
//! and a 401 that pauses the destination until new credentials arrive.

mod common;

use common::credentials::{self, Platform};
use serde_json::json;

fn platform() -> Platform {
    Platform {
        kind: "newrelic",
        header: "api-key",
        value_old: "NRAL-old-license-0001",
        value_private: "NRAL-private-license-0003",
        value_new: "NRAL-new-license-0002",
        secret_old: "NRAL-old-license-0001",
        empty_body: b"",
        content_type: "application/x-protobuf",
        credentials_words: "license key",
        config_open: |_base| json!({"licenseKey": "NRAL-old-license-0001", "region": "eu"}),
        config_private: |_base| json!({"licenseKey": "NRAL-private-license-0003"}),
        config_new: json!({"licenseKey": "NRAL-new-license-0002"}),
        settings: |s, url| {
            s.delivery.endpoint_overrides.insert(
                "newrelic".into(),
                url.trim_end_matches("/v1/traces").to_owned(),
            );
        },
    }
}

#[tokio::test]
async fn delivers_with_credentials_privacy_mode_and_retry_after() {
    credentials::delivers_with_credentials_privacy_mode_and_retry_after(&platform()).await;
}

#[tokio::test]
async fn rejected_credentials_pause_until_new_ones_arrive() {
    credentials::rejected_credentials_pause_until_new_ones_arrive(&platform()).await;
}
