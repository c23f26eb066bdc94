//! OTLP/HTTP endpoint URLs from the base URLs users configure.

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
