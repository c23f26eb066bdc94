//! The dashboard's static files, compiled into the binary.
//!
//! - `htmx-2.0.11.min.js`: htmx 2.0.11 exactly as the npm package `htmx.org@2.0.11` ships it
//!   (`dist/htmx.min.js`, SHA-256 d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717,
//!   Zero-Clause BSD licence in `htmx-LICENSE.txt`).
//! - `dashboard.css`, `dashboard.js`, `icon.svg`: the dashboard's own style sheet, script and
//!   icon.
//!
//! Each is served under a name that carries a hash of its content, with a year-long
//! `immutable` cache header: a new build changes the names, so browsers never use a stale file.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    /// `htmx.<hash>.js`: what pages link to.
    name: String,
    content_type: &'static str,
    body: &'static [u8],
}

fn asset(stem: &str, ext: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
    let hash = hex::encode(&Sha256::digest(body)[..6]);
    Asset {
        name: format!("{stem}.{hash}.{ext}"),
        content_type,
        body,
    }
}

static ASSETS: LazyLock<[Asset; 4]> = LazyLock::new(|| {
    [
        asset(
            "htmx-2.0.11",
            "js",
            "text/javascript; charset=utf-8",
            include_bytes!("assets/htmx-2.0.11.min.js"),
        ),
        asset(
            "dashboard",
            "css",
            "text/css; charset=utf-8",
            include_bytes!("assets/dashboard.css"),
        ),
        asset(
            "dashboard",
            "js",
            "text/javascript; charset=utf-8",
            include_bytes!("assets/dashboard.js"),
        ),
        asset(
            "icon",
            "svg",
            "image/svg+xml",
            include_bytes!("assets/icon.svg"),
        ),
    ]
});

/// The URL of htmx.
pub fn htmx() -> String {
    format!("/assets/{}", ASSETS[0].name)
}

/// The URL of the style sheet.
pub fn css() -> String {
    format!("/assets/{}", ASSETS[1].name)
}

/// The URL of the dashboard's script.
pub fn js() -> String {
    format!("/assets/{}", ASSETS[2].name)
}

/// The URL of the icon.
pub fn icon() -> String {
    format!("/assets/{}", ASSETS[3].name)
}

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut res = a.body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_htmx_is_the_pinned_release() {
        let digest = hex::encode(Sha256::digest(include_bytes!("assets/htmx-2.0.11.min.js")));
        assert_eq!(
            digest,
            "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
        );
        assert!(htmx().starts_with("/assets/htmx-2.0.11."));
        assert_ne!(css(), js());
    }
}
