//! A receiver without a body size limit that records every body (inflated when gzipped) and
//! answers with queued statuses (and `Retry-After`), then `default_status`: for requests split
//! under a size cap.

use std::sync::Arc;

/// Records bodies; answers the queued `(status, Retry-After)` pairs in order, then
/// `default_status`.
pub struct BigReceiver {
    pub url: String,
    bodies: Arc<std::sync::Mutex<Vec<bytes::Bytes>>>,
}

impl BigReceiver {
    pub async fn start(
        default_status: u16,
        statuses: Vec<(u16, Option<&'static str>)>,
    ) -> BigReceiver {
        use axum::extract::{DefaultBodyLimit, State};
        use axum::response::IntoResponse;
        type Shared = (
            Arc<std::sync::Mutex<Vec<bytes::Bytes>>>,
            Arc<std::sync::Mutex<std::collections::VecDeque<(u16, Option<&'static str>)>>>,
            u16,
        );
        async fn handle(
            State((bodies, answers, default_status)): State<Shared>,
            headers: axum::http::HeaderMap,
            body: bytes::Bytes,
        ) -> axum::response::Response {
            bodies.lock().unwrap().push(super::inflate(&headers, body));
            let (status, retry_after) = answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((default_status, None));
            let mut resp = axum::http::StatusCode::from_u16(status)
                .unwrap()
                .into_response();
            if let Some(r) = retry_after {
                resp.headers_mut().insert("retry-after", r.parse().unwrap());
            }
            resp
        }
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared: Shared = (
            bodies.clone(),
            Arc::new(std::sync::Mutex::new(statuses.into())),
            default_status,
        );
        let app = axum::Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        BigReceiver { url, bodies }
    }

    pub fn bodies(&self) -> Vec<bytes::Bytes> {
        self.bodies.lock().unwrap().clone()
    }
}
