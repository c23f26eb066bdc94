//! Two scenarios shared by the end-to-end tests of platforms that take an OTLP export with a
//! credentials header (arize, grafana, newrelic): delivery with the platform's credentials,
//! privacy mode and a 429 with Retry-After; and a 401 that pauses the destination until new
//! credentials arrive. Each test file describes its platform with a `Platform`.

use std::time::Duration;

use serde_json::{Value, json};
use tracecast_server::settings::Settings;

use super::TestServer;
use super::e2e::{
    contains, create, delivered_ids, fast, has_id, header, ingest, patch_config, record,
    test_connection, wait_paused, wait_status,
};
use super::receiver::{Captured, Mode, Receiver};

pub struct Platform {
    /// The destination type.
    pub kind: &'static str,
    /// The header carrying the credentials, and its values for each destination.
    pub header: &'static str,
    pub value_old: &'static str,
    pub value_private: &'static str,
    pub value_new: &'static str,
    /// The secret of the first destination, which its status must not show.
    pub secret_old: &'static str,
    /// The body of the connection test (an empty OTLP export request).
    pub empty_body: &'static [u8],
    pub content_type: &'static str,
    /// How the test-connection message names the credentials.
    pub credentials_words: &'static str,
    /// Configs from the receiver's base URL: the open destination (also the one paused)…
    pub config_open: fn(&str) -> Value,
    /// …the private one…
    pub config_private: fn(&str) -> Value,
    /// …and the patch that brings new credentials.
    pub config_new: Value,
    /// Settings beyond `fast`, from the receiver's URL (an endpoint override, say).
    pub settings: fn(&mut Settings, &str),
}

impl Platform {
    async fn server(&self, rx: &Receiver) -> TestServer {
        let url = rx.url.clone();
        let more = self.settings;
        TestServer::start_with(move |s| {
            fast(s);
            more(s, &url);
        })
        .await
    }

    /// Whether a request carries this credential value.
    fn with_header<'a>(&self, value: &'a str) -> impl Fn(&Captured) -> bool + 'a {
        let name = self.header;
        move |r: &Captured| header(r, name) == Some(value)
    }
}

/// Delivery with the platform's credentials to an open and a private destination, the first
/// request throttled with Retry-After: 1.
pub async fn delivers_with_credentials_privacy_mode_and_retry_after(p: &Platform) {
    let rx = Receiver::start().await;
    let s = p.server(&rx).await;
    let (key, _) = s.workspace_key(None).await;
    let base = rx.url.trim_end_matches("/v1/traces");
    let open = create(&s, p.kind, "open", (p.config_open)(base), json!({})).await;
    let private = create(
        &s,
        p.kind,
        "private",
        (p.config_private)(base),
        json!({"privacy_mode": true}),
    )
    .await;

    // Test connection through the API: the empty OTLP request with the destination's credentials.
    let t = test_connection(&s, &open).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["data"]["ok"], true, "{}", t.text);
    assert_eq!(t.body["data"]["status"], 200, "{}", t.text);
    let probe = rx.requests().pop().expect("the test request arrived");
    assert!(p.with_header(p.value_old)(&probe), "{:?}", probe.headers);
    assert_eq!(&probe.body[..], p.empty_body);

    // The first delivery is throttled with Retry-After: 1.
    rx.script([Mode::RetryAfter(429, 1)]);
    let ids = ["e2e-alpha", "e2e-bravo", "e2e-charlie"];
    ingest(
        &s,
        &key,
        &ids.iter().map(|id| record(id)).collect::<Vec<_>>(),
    )
    .await;
    rx.wait(15, "every generation at both destinations", |r| {
        let all = r.requests();
        let got = |v: &str| {
            let mine: Vec<&Captured> = all
                .iter()
                .filter(|c| c.answered < 300 && p.with_header(v)(c))
                .collect();
            ids.iter()
                .all(|id| mine.iter().any(|c| has_id(&c.body, id)))
        };
        got(p.value_old) && got(p.value_private)
    })
    .await;
    let all = rx.requests();
    assert_eq!(delivered_ids(&rx, &ids).len(), 3);
    for r in all
        .iter()
        .filter(|r| r.answered < 300 && !r.body.is_empty() && &r.body[..] != p.empty_body)
    {
        assert_eq!(header(r, "content-type"), Some(p.content_type));
        let is_private = p.with_header(p.value_private)(r);
        assert_eq!(
            contains(&r.body, "PROMPT-TEXT") || contains(&r.body, "COMPLETION-TEXT"),
            !is_private,
            "privacy mode: content only where it is off"
        );
        assert!(
            contains(&r.body, "session-e2e"),
            "the session goes everywhere"
        );
    }
    // Retry-After was honoured by the destination that got the 429.
    let throttled = all.iter().position(|r| r.answered == 429).expect("a 429");
    let value = all[throttled]
        .headers
        .get(p.header)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let next = all[throttled + 1..]
        .iter()
        .find(|r| p.with_header(&value)(r))
        .expect("a retry after the 429");
    let gap = next.at - all[throttled].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
    for id in [&open, &private] {
        wait_status(&s, id, "three delivered", |st| {
            st["counts"]["delivered"] == 3
        })
        .await;
    }
}

/// A 401 pauses the destination with its queue kept; new credentials resume it.
pub async fn rejected_credentials_pause_until_new_ones_arrive(p: &Platform) {
    let rx = Receiver::start().await;
    rx.set_mode(Mode::Status(401));
    let s = p.server(&rx).await;
    let (key, _) = s.workspace_key(None).await;
    let base = rx.url.trim_end_matches("/v1/traces");
    let id = create(&s, p.kind, "paused", (p.config_open)(base), json!({})).await;

    let t = test_connection(&s, &id).await;
    assert_eq!(t.body["data"]["ok"], false, "{}", t.text);
    assert_eq!(t.body["data"]["status"], 401, "{}", t.text);
    assert!(
        t.body["data"]["message"]
            .as_str()
            .unwrap()
            .contains(p.credentials_words),
        "{}",
        t.text
    );

    let ids = ["p-one", "p-two", "p-three", "p-four"];
    ingest(
        &s,
        &key,
        &ids.iter().map(|id| record(id)).collect::<Vec<_>>(),
    )
    .await;
    let st = wait_paused(&s, &id, "credentials rejected (401)").await;
    assert_eq!(st["queue"]["depth"], 4, "the queue is kept");
    assert_eq!(st["counts"]["dead_lettered"], 0);
    assert!(
        !st.to_string().contains(p.secret_old),
        "no secret in the status"
    );

    rx.set_mode(Mode::Ok);
    patch_config(&s, &id, p.config_new.clone()).await;
    rx.wait(15, "all four with the new credentials", |r| {
        let fresh: Vec<Captured> = r
            .requests()
            .into_iter()
            .filter(|c| c.answered < 300 && p.with_header(p.value_new)(c))
            .collect();
        ids.iter()
            .all(|id| fresh.iter().any(|c| has_id(&c.body, id)))
    })
    .await;
    let st = wait_status(&s, &id, "active and drained", |st| {
        st["state"] == "active" && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["delivered"], 4);
}
