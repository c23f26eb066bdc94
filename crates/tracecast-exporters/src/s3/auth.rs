//! Credentials and AWS Signature Version 4 for the `s3` destination.
//!
//! Signing is `aws-sigv4`'s (no hand-rolled crypto). Credentials come from the config
//! (`authMode: access_keys`: `accessKeyId`, `secretAccessKey`, optional `sessionToken`) or from
//! STS `AssumeRole` (`authMode: iam_role`: `roleArn`, optional `externalId`), called with base
//! credentials from the server's environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! optional `AWS_SESSION_TOKEN`). The temporary credentials are cached and refreshed five
//! minutes before they expire.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde::Deserialize;

/// Temporary credentials are refreshed this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Lifetime asked of STS (one hour, the default maximum of a role session).
const SESSION_SECONDS: u64 = 3600;

/// Why no credentials could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialError {
    /// STS's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Worth retrying (no answer, 429, 5xx) rather than pausing the destination.
    pub transient: bool,
    pub message: String,
}

/// Where credentials come from.
pub(crate) enum CredentialSource {
    Static(Credentials),
    AssumeRole(AssumeRole),
}

pub(crate) struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<String>,
    /// STS endpoint (base URL).
    pub sts_url: String,
    /// The region STS requests are signed for.
    pub sts_region: String,
    pub client: reqwest::Client,
    pub timeout: Duration,
    cache: tokio::sync::Mutex<Option<Credentials>>,
}

impl AssumeRole {
    pub fn new(
        role_arn: String,
        external_id: Option<String>,
        sts_url: String,
        sts_region: String,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Self {
        AssumeRole {
            role_arn,
            external_id,
            sts_url,
            sts_region,
            client,
            timeout,
            cache: tokio::sync::Mutex::new(None),
        }
    }
}

impl CredentialSource {
    /// Credentials valid for at least [`REFRESH_MARGIN`].
    pub async fn get(&self) -> Result<Credentials, CredentialError> {
        match self {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::AssumeRole(r) => {
                let mut cache = r.cache.lock().await;
                if let Some(c) = cache.as_ref()
                    && c.expiry()
                        .is_none_or(|e| e > SystemTime::now() + REFRESH_MARGIN)
                {
                    return Ok(c.clone());
                }
                let fresh = assume_role(r).await?;
                *cache = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }

    /// Forgets cached temporary credentials (after S3 said they expired).
    pub async fn invalidate(&self) {
        if let CredentialSource::AssumeRole(r) = self {
            *r.cache.lock().await = None;
        }
    }
}

/// Base credentials from the standard AWS environment variables.
fn env_credentials() -> Option<Credentials> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let akid = var("AWS_ACCESS_KEY_ID")?;
    let secret = var("AWS_SECRET_ACCESS_KEY")?;
    Some(Credentials::new(
        akid,
        secret,
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResponse {
    assume_role_result: AssumeRoleResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResult {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

/// `<Error><Code>…</Code><Message>…</Message></Error>` (S3's root element, inside STS's
/// `<ErrorResponse>`).
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct XmlError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsErrorResponse {
    error: XmlError,
}

/// Reads an S3 or STS error body (empty when it is not one).
pub(crate) fn parse_error(body: &str) -> XmlError {
    if let Ok(e) = quick_xml::de::from_str::<StsErrorResponse>(body) {
        return e.error;
    }
    quick_xml::de::from_str::<XmlError>(body).unwrap_or_default()
}

/// `AssumeRole` over STS's Query API, signed with the environment's credentials.
async fn assume_role(r: &AssumeRole) -> Result<Credentials, CredentialError> {
    let base = env_credentials().ok_or_else(|| CredentialError {
        status: None,
        transient: false,
        message: "authMode iam_role needs base AWS credentials in the tracecast server's environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN) to call STS AssumeRole".into(),
    })?;
    let session_name = format!(
        "tracecast-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", "AssumeRole")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &r.role_arn)
            .append_pair("RoleSessionName", &session_name)
            .append_pair("DurationSeconds", &SESSION_SECONDS.to_string());
        if let Some(id) = &r.external_id {
            form.append_pair("ExternalId", id);
        }
        form.finish()
    };
    let url = format!("{}/", r.sts_url.trim_end_matches('/'));
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let signed = sign_request(
        &base,
        &SignSpec {
            service: "sts",
            region: &r.sts_region,
            method: "POST",
            url: &url,
            s3: false,
        },
        &[("content-type".to_string(), content_type.to_string())],
        body.as_bytes(),
    )
    .map_err(|e| CredentialError {
        status: None,
        transient: false,
        message: format!("cannot sign the STS AssumeRole request: {e}"),
    })?;
    let mut req = r
        .client
        .post(&url)
        .timeout(r.timeout)
        .header("content-type", content_type)
        .body(body);
    for (k, v) in signed {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| CredentialError {
        status: None,
        transient: true,
        message: format!("AWS STS could not be reached at {}: {e}", r.sts_url),
    })?;
    let status = resp.status().as_u16();
    let text = crate::http::read_capped(resp, crate::http::MAX_ANSWER).await;
    if !(200..300).contains(&status) {
        let err = parse_error(&text);
        let code = err.code.unwrap_or_else(|| format!("HTTP {status}"));
        let detail = err.message.map(|m| format!(": {m}")).unwrap_or_default();
        return Err(CredentialError {
            status: Some(status),
            transient: status == 429 || status >= 500 || code == "Throttling",
            message: format!(
                "AWS STS refused to assume role {} ({status} {code}{detail})",
                r.role_arn
            ),
        });
    }
    let parsed: AssumeRoleResponse =
        quick_xml::de::from_str(&text).map_err(|e| CredentialError {
            status: Some(status),
            transient: true,
            message: format!("AWS STS answered AssumeRole with unreadable XML: {e}"),
        })?;
    let c = parsed.assume_role_result.credentials;
    let expiry = chrono::DateTime::parse_from_rfc3339(c.expiration.trim())
        .ok()
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64))
        // Unknown expiry: assume the lifetime we asked for.
        .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(SESSION_SECONDS));
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        Some(expiry),
        "sts-assume-role",
    ))
}

/// What one request is signed for.
pub(crate) struct SignSpec<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub method: &'a str,
    /// The exact URL the request goes to (path already percent-encoded once).
    pub url: &'a str,
    /// S3 rules: no path normalisation, no double encoding, `x-amz-content-sha256`.
    pub s3: bool,
}

/// SigV4-signs a request: returns the headers to add (`authorization`, `x-amz-date`,
/// `x-amz-content-sha256` for S3, `x-amz-security-token` with a session token). `headers` are
/// the other headers sent, all of which are signed.
pub(crate) fn sign_request(
    creds: &Credentials,
    spec: &SignSpec<'_>,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let identity: Identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    if spec.s3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(spec.region)
        .name(spec.service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        spec.method,
        spec.url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_s3_and_sts_errors() {
        let s3 = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match &amp; so on</Message><RequestId>1</RequestId></Error>"#;
        let e = parse_error(s3);
        assert_eq!(e.code.as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(
            e.message.as_deref(),
            Some("The request signature we calculated does not match & so on")
        );
        let sts = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized</Message></Error><RequestId>x</RequestId></ErrorResponse>"#;
        assert_eq!(parse_error(sts).code.as_deref(), Some("AccessDenied"));
        assert!(parse_error("not xml").code.is_none());
        assert!(parse_error("").code.is_none());
    }

    #[test]
    fn signs_with_session_token_and_content_hash() {
        let c = Credentials::new("AKID", "SECRET", Some("TOKEN".into()), None, "t");
        let h = sign_request(
            &c,
            &SignSpec {
                service: "s3",
                region: "eu-west-1",
                method: "PUT",
                url: "https://b.s3.eu-west-1.amazonaws.com/a/b%20c.json",
                s3: true,
            },
            &[("content-type".into(), "application/json".into())],
            b"{}",
        )
        .unwrap();
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        };
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-1/s3/aws4_request"), "{auth}");
        assert!(
            auth.contains("content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert_eq!(get("x-amz-security-token"), Some("TOKEN"));
        assert_eq!(
            get("x-amz-content-sha256"),
            Some("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
        );
    }
}
