//! `grafana` end to end: the real server delivers to a loopback receiver playing the Grafana Cloud OTLP gateway
//! (OTLP/HTTP protobuf with Basic auth `instanceId:apiKey`): delivery with the platform's credentials, privacy mode, 429 with Retry-After,
//! and a 401 that pauses the destination until new credentials arrive.

mod common;

use common::credentials::{self, Platform};
use serde_json::json;

fn platform() -> Platform {
    Platform {
        kind: "grafana",
        header: "authorization",
        value_old: "Basic MTIzNDU2OmdsY19vbGRfMDAwMQ==",
        value_private: "Basic MTIzNDU2OmdsY19wcml2YXRlXzAwMDM=",
        value_new: "Basic MTIzNDU2OmdsY19uZXdfMDAwMg==",
        secret_old: "glc_old_0001",
        empty_body: b"",
        content_type: "application/x-protobuf",
        credentials_words: "instance ID / API token",
        config_open: |base| json!({"apiKey": "glc_old_0001", "instanceId": "123456", "baseUrl": base}),
        config_private: |base| json!({"apiKey": "glc_private_0003", "instanceId": "123456", "baseUrl": base}),
        config_new: json!({"apiKey": "glc_new_0002"}),
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
