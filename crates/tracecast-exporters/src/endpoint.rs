//! A destination's endpoint from its config: a configured base URL joined with a path, the
//! OTLP/HTTP traces URL of a base URL, and headers set from config fields (credentials marked
//! sensitive).

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName};

use crate::ExportError;

/// Sets header `name` from config field `field`: an invalid value is a config error that names
/// the field (never the value), and a secret is marked sensitive so that it never appears in
/// debug output.
pub fn set_header(
    headers: &mut HeaderMap,
    name: &'static str,
    value: &str,
    field: &str,
    secret: bool,
) -> Result<(), ExportError> {
    let v = crate::http::header_value(
        value,
        secret,
        &format!("{field} is not a valid HTTP header value"),
    )?;
    headers.insert(HeaderName::from_static(name), v);
    Ok(())
}

/// `base` (a configured base URL, from config field `field`) with `path` appended (`path`
/// starts with `/`, or is empty): trailing slashes of the base are ignored. The base must be an
/// absolute http(s) URL without query or fragment.
pub fn join_url(base: &str, path: &str, field: &str) -> Result<Url, ExportError> {
    let joined = format!("{}{path}", base.trim_end_matches('/'));
    let url = Url::parse(&joined)
        .map_err(|e| ExportError::Config(format!("{field}: {base:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ExportError::Config(format!(
            "{field}: {base:?} is not an http(s) URL"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ExportError::Config(format!(
            "{field}: {base:?} must not have a query or fragment"
        )));
    }
    Ok(url)
}

/// The traces URL for a base URL: `base` itself when it already ends in `/v1/traces`;
/// `base + "/traces"` when it ends in `/v1`; else `base + prefix + "/v1/traces"`, unless `base`
/// already ends in `prefix` (Grafana's `/otlp`).
pub fn traces_url(base: &str, prefix: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else if base.ends_with("/v1") {
        format!("{base}/traces")
    } else if !prefix.is_empty() && base.ends_with(prefix) {
        format!("{base}/v1/traces")
    } else {
        format!("{base}{prefix}/v1/traces")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_and_reject_bad_bases() {
        assert_eq!(
            join_url(
                "https://api.smith.langchain.com/",
                "/otel/v1/traces",
                "endpoint"
            )
            .unwrap()
            .as_str(),
            "https://api.smith.langchain.com/otel/v1/traces"
        );
        assert!(join_url("not a url", "/x", "endpoint").is_err());
        assert!(join_url("ftp://h", "/x", "endpoint").is_err());
        let e = join_url("https://h?a=1", "/x", "baseUrl").unwrap_err();
        assert!(e.to_string().contains("baseUrl"), "{e}");
    }

    #[test]
    fn header_errors_name_the_field_not_the_value() {
        let mut h = HeaderMap::new();
        let e = set_header(&mut h, "x-api-key", "bad\nsecret", "apiKey", true).unwrap_err();
        assert!(e.to_string().contains("apiKey") && !e.to_string().contains("secret"));
        set_header(&mut h, "x-api-key", "lsv2_pt_x", "apiKey", true).unwrap();
        assert!(h["x-api-key"].is_sensitive());
    }

    #[test]
    fn traces_urls() {
        assert_eq!(
            traces_url("https://otlp.arize.com", ""),
            "https://otlp.arize.com/v1/traces"
        );
        assert_eq!(
            traces_url("https://otlp.arize.com/v1/", ""),
            "https://otlp.arize.com/v1/traces"
        );
        assert_eq!(
            traces_url("https://g.grafana.net", "/otlp"),
            "https://g.grafana.net/otlp/v1/traces"
        );
        assert_eq!(
            traces_url("https://g.grafana.net/otlp/", "/otlp"),
            "https://g.grafana.net/otlp/v1/traces"
        );
        assert_eq!(
            traces_url("https://g.grafana.net/otlp/v1/traces", "/otlp"),
            "https://g.grafana.net/otlp/v1/traces"
        );
    }
}
