//! `arize` end to end: the real server delivers to a loopback receiver playing Arize AX
//! (OTLP/HTTP protobuf with the `authorization`, `arize-space-id` and `arize-interface` headers): delivery with the platform's credentials, privacy mode, 429 with Retry-After,
//! and a 401 that pauses the destination until new credentials arrive.

mod common;

use common::credentials::{self, Platform};
use serde_json::json;

fn platform() -> Platform {
    Platform {
        kind: "arize",
        header: "authorization",
        value_old: "ak-old-0001",
        value_private: "ak-private-0003",
        value_new: "ak-new-0002",
        secret_old: "ak-old-0001",
        empty_body: b"",
        content_type: "application/x-protobuf",
        credentials_words: "space key / API key",
        config_open: |base| json!({"apiKey": "ak-old-0001", "spaceKey": "space-1", "modelId": "e2e-project", "baseUrl": base}),
        config_private: |base| json!({"apiKey": "ak-private-0003", "spaceKey": "space-1", "modelId": "e2e-private", "baseUrl": base}),
        config_new: json!({"apiKey": "ak-new-0002"}),
        settings: |_, _| {},
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
