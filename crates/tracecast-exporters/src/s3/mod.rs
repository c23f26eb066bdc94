//! `s3`: one JSON object per trace in Amazon S3 or an S3-compatible store (Cloudflare R2,
//! Google Cloud Storage's XML API, MinIO, Ceph, ...).
//!
//! Protocol: S3 `PutObject` (`PUT /<key>`), one request per trace, signed with AWS Signature
//! Version 4 (`aws-sigv4`), as OpenRouter's S3 destination does
//! (<https://openrouter.ai/docs/guides/features/broadcast/s3>: "Each trace is saved as a
//! separate JSON file with the format `{traceId}-{timestamp}.json`"; batching into larger files
//! is left to Kinesis Firehose there). The S3 REST API is the protocol every S3-compatible
//! store implements; see docs/destinations/s3.md.
//!
//! - Keys: `pathTemplate` expanded (`{prefix}`, `{date}`, `{year}`, `{month}`, `{day}`,
//!   `{apiKeyName}`) then `/{traceId}-{timestamp}.json` ([`document::KeyLayout`]), the same for
//!   every retry of a generation, so a retry overwrites rather than duplicates.
//! - Addressing: AWS without a custom endpoint uses virtual-hosted style
//!   (`https://<bucket>.s3.<region>.amazonaws.com/<key>`, path-style for bucket names with dots,
//!   which the TLS certificate does not cover); every custom endpoint (R2, GCS, MinIO, VPC or
//!   FIPS endpoints) uses path-style (`<endpoint>/<bucket>/<key>`), which all of them accept and
//!   MinIO and most self-hosted stores require.
//! - Region: `region` when set; else `auto` for R2 and GCS, `us-east-1` for other stores, and
//!   for AWS the bucket's own region, read once from `HEAD /<bucket>` (`x-amz-bucket-region`)
//!   and cached (re-read when S3 says the region is wrong).
//! - A batch from the engine is up to [`MAX_ITEMS`] traces; their PUTs run concurrently and
//!   the answer is per trace ([`Outcome::Partial`]).

mod auth;
mod document;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::{Map, Value};
use tracecast_model::DestinationType;
use tracecast_model::trace::TraceView;

use crate::config::{optional_str, required_str};
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, ItemOutcome, Outcome,
    Payload,
};
use auth::{AssumeRole, CredentialSource, SignSpec, parse_error, sign_request};
use document::{KeyInputs, KeyLayout, document, parse_template};

/// Traces per batch (one PUT each, sent concurrently).
pub const MAX_ITEMS: usize = 16;
/// Bytes per batch (S3 itself takes objects up to 5 GiB in one PUT).
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// The content type of an encoded batch: for each object, `<key>\n<length>\n<document>`.
const BATCH_CONTENT_TYPE: &str = "application/x-tracecast-s3-objects";

/// What `encodeURIComponent`-style encoding leaves alone: S3's unreserved characters.
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Headers the exporter sets itself: custom headers with these names are ignored (they would
/// break the signature).
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-type",
    "content-length",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Aws,
    CloudflareR2,
    Gcs,
    Other,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::CloudflareR2 => "cloudflare_r2",
            Provider::Gcs => "gcs",
            Provider::Other => "other",
        }
    }

    /// The provider a custom endpoint's host points to (when `provider` is not set).
    fn infer(endpoint: Option<&str>) -> Provider {
        let Some(ep) = endpoint else {
            return Provider::Aws;
        };
        let host = reqwest::Url::parse(ep)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        if host.ends_with(".r2.cloudflarestorage.com") {
            Provider::CloudflareR2
        } else if host == "storage.googleapis.com" {
            Provider::Gcs
        } else if host.ends_with(".amazonaws.com") {
            Provider::Aws
        } else {
            Provider::Other
        }
    }
}

/// Where objects go.
#[derive(Debug, Clone)]
enum Addressing {
    /// AWS's own endpoint for the bucket's region: virtual-hosted style.
    AwsDefault,
    /// `<endpoint>/<bucket>/<key>`.
    PathStyle(String),
}

struct Inner {
    bucket: String,
    provider: Provider,
    addressing: Addressing,
    /// `region` from the config, or the provider's fixed one.
    region: Option<String>,
    /// The bucket's region as S3 told it (AWS with no `region` configured).
    detected_region: Mutex<Option<String>>,
    layout: KeyLayout,
    /// Custom headers (lower-case names), sent and signed on every request.
    headers: Vec<(String, String)>,
    creds: CredentialSource,
    client: reqwest::Client,
    timeout: Duration,
}

/// The `s3` exporter.
pub struct S3Exporter {
    inner: Arc<Inner>,
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(S3Exporter::new(config, ctx)?))
}

fn config_err(msg: impl Into<String>) -> ExportError {
    ExportError::Config(msg.into())
}

impl S3Exporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let bucket = required_str(config, "bucketName")?.to_string();
        let endpoint =
            optional_str(config, "endpoint").map(|e| e.trim_end_matches('/').to_string());
        if let Some(ep) = &endpoint {
            let url = reqwest::Url::parse(ep)
                .map_err(|e| config_err(format!("endpoint {ep:?} is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(config_err(format!(
                    "endpoint {ep:?} must be an http(s) URL with a host"
                )));
            }
        }
        let provider = match optional_str(config, "provider") {
            None => Provider::infer(endpoint.as_deref()),
            Some("aws") => Provider::Aws,
            Some("cloudflare_r2") => Provider::CloudflareR2,
            Some("gcs") => Provider::Gcs,
            Some("other") => Provider::Other,
            Some(p) => {
                return Err(config_err(format!(
                    "provider {p:?} is not one of aws, cloudflare_r2, gcs, other"
                )));
            }
        };
        let addressing = match (provider, endpoint) {
            (_, Some(ep)) => Addressing::PathStyle(ep),
            (Provider::Aws, None) => Addressing::AwsDefault,
            (Provider::Gcs, None) => {
                Addressing::PathStyle("https://storage.googleapis.com".to_string())
            }
            (Provider::CloudflareR2, None) => {
                return Err(config_err(
                    "endpoint is required for provider cloudflare_r2 (https://<account-id>.r2.cloudflarestorage.com)",
                ));
            }
            (Provider::Other, None) => {
                return Err(config_err(
                    "endpoint is required for provider other (the S3-compatible service's URL)",
                ));
            }
        };
        let region = optional_str(config, "region")
            .map(str::to_string)
            .or(match provider {
                Provider::Aws => None,
                Provider::CloudflareR2 | Provider::Gcs => Some("auto".to_string()),
                Provider::Other => Some("us-east-1".to_string()),
            });

        let prefix = optional_str(config, "prefix")
            .unwrap_or("openrouter-traces")
            .to_string();
        let template_src = optional_str(config, "pathTemplate").unwrap_or("{prefix}/{date}");
        let template = parse_template(template_src).map_err(config_err)?;
        if template_src.starts_with('/') {
            return Err(config_err("pathTemplate must not start with '/'"));
        }

        let mut headers = Vec::new();
        for (name, value) in crate::config::custom_headers(config)?.iter() {
            let name = name.as_str().to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&name.as_str()) {
                continue;
            }
            let value = value
                .to_str()
                .map_err(|_| config_err(format!("headers.{name} is not a visible ASCII value")))?;
            headers.push((name, value.to_string()));
        }

        let creds = match optional_str(config, "authMode").unwrap_or("access_keys") {
            "access_keys" => {
                let akid = required_str(config, "accessKeyId").map_err(|_| {
                    config_err("accessKeyId is required when authMode is access_keys")
                })?;
                let secret = required_str(config, "secretAccessKey").map_err(|_| {
                    config_err("secretAccessKey is required when authMode is access_keys")
                })?;
                CredentialSource::Static(Credentials::new(
                    akid,
                    secret,
                    optional_str(config, "sessionToken").map(str::to_string),
                    None,
                    "destination-config",
                ))
            }
            "iam_role" => {
                let role_arn = required_str(config, "roleArn")
                    .map_err(|_| config_err("roleArn is required when authMode is iam_role"))?;
                let sts_region = region
                    .as_deref()
                    .filter(|r| *r != "auto")
                    .unwrap_or("us-east-1")
                    .to_string();
                let sts_url = ctx
                    .endpoint_override(DestinationType::S3)
                    .map(str::to_string)
                    .or_else(|| {
                        std::env::var("AWS_ENDPOINT_URL_STS")
                            .ok()
                            .filter(|v| !v.trim().is_empty())
                    })
                    .unwrap_or_else(|| format!("https://sts.{sts_region}.amazonaws.com"));
                CredentialSource::AssumeRole(AssumeRole::new(
                    role_arn.to_string(),
                    optional_str(config, "externalId").map(str::to_string),
                    sts_url,
                    sts_region,
                    ctx.client.clone(),
                    ctx.timeout,
                ))
            }
            other => {
                return Err(config_err(format!(
                    "authMode {other:?} is not one of access_keys, iam_role"
                )));
            }
        };

        Ok(S3Exporter {
            inner: Arc::new(Inner {
                bucket,
                provider,
                addressing,
                region,
                detected_region: Mutex::new(None),
                layout: KeyLayout { prefix, template },
                headers,
                creds,
                client: ctx.client.clone(),
                timeout: ctx.timeout,
            }),
        })
    }
}

/// One S3 answer, classified.
#[derive(Debug, Clone, PartialEq)]
enum ObjResult {
    Ok,
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    Reject {
        status: u16,
        error: String,
    },
    /// Destination-wide: credentials refused, bucket missing, wrong region configured.
    Pause {
        status: u16,
        error: String,
    },
}

/// An S3 answer: status, error code and message, and the headers that matter.
struct Answer {
    status: u16,
    code: String,
    message: String,
    bucket_region: Option<String>,
    retry_after: Option<Duration>,
}

impl Answer {
    fn describe(&self) -> String {
        if self.message.is_empty() {
            format!("{} {}", self.status, self.code)
        } else {
            format!("{} {}: {}", self.status, self.code, self.message)
        }
    }
}

async fn read_answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let bucket_region = resp
        .headers()
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let retry_after = crate::http::retry_after(resp.headers());
    let (code, message) = if (200..300).contains(&status) {
        (String::new(), String::new())
    } else {
        let text = crate::http::read_capped(resp, crate::http::MAX_ANSWER).await;
        let e = parse_error(&text);
        (
            e.code.unwrap_or_else(|| default_code(status).to_string()),
            e.message
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>(),
        )
    };
    Answer {
        status,
        code,
        message,
        bucket_region,
        retry_after,
    }
}

/// S3's code for a status when the body had none (a HEAD answer has no body).
fn default_code(status: u16) -> &'static str {
    match status {
        301 => "PermanentRedirect",
        307 => "TemporaryRedirect",
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        429 => "TooManyRequests",
        503 => "SlowDown",
        _ => "Error",
    }
}

impl Inner {
    /// The URL of `key` in the bucket (`None`: the bucket itself), for `region`.
    fn url(&self, region: &str, key: Option<&str>) -> String {
        let key_path = key
            .map(|k| {
                k.split('/')
                    .map(|s| utf8_percent_encode(s, KEY_SEGMENT).to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        let bucket = utf8_percent_encode(&self.bucket, KEY_SEGMENT).to_string();
        match &self.addressing {
            Addressing::PathStyle(ep) => format!("{ep}/{bucket}/{key_path}"),
            Addressing::AwsDefault if dns_compatible(&self.bucket) => {
                format!("https://{bucket}.s3.{region}.amazonaws.com/{key_path}")
            }
            Addressing::AwsDefault => {
                format!("https://s3.{region}.amazonaws.com/{bucket}/{key_path}")
            }
        }
    }

    /// Sends one signed request.
    async fn request(
        &self,
        creds: &Credentials,
        region: &str,
        method: Method,
        url: &str,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut headers = self.headers.clone();
        if body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        let body = body.unwrap_or_default();
        let signed = sign_request(
            creds,
            &SignSpec {
                service: "s3",
                region,
                method: method.as_str(),
                url,
                s3: true,
            },
            &headers,
            &body,
        );
        let mut req = self
            .client
            .request(method, url)
            .timeout(self.timeout)
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        match signed {
            Ok(signed) => {
                for (k, v) in signed {
                    req = req.header(k, v);
                }
            }
            // Only a malformed URL gets here (bucket and key are encoded): send unsigned and
            // let S3 refuse it with its own words.
            Err(e) => tracing::warn!(error = %e, "s3: cannot sign request"),
        }
        req.send().await
    }

    /// The region to sign for: configured, or the bucket's (detected once, then cached).
    async fn region(&self, creds: &Credentials) -> Result<String, ObjResult> {
        if let Some(r) = &self.region {
            return Ok(r.clone());
        }
        if let Some(r) = self.detected_region.lock().expect("poisoned").clone() {
            return Ok(r);
        }
        let url = match &self.addressing {
            Addressing::PathStyle(ep) => {
                format!("{ep}/{}", utf8_percent_encode(&self.bucket, KEY_SEGMENT))
            }
            Addressing::AwsDefault => format!(
                "https://s3.amazonaws.com/{}",
                utf8_percent_encode(&self.bucket, KEY_SEGMENT)
            ),
        };
        let resp = self
            .request(creds, "us-east-1", Method::HEAD, &url, None)
            .await
            .map_err(|e| ObjResult::Retry {
                status: None,
                error: format!(
                    "S3 could not be reached to find the bucket's region: {}",
                    crate::http::transport_message(&e)
                ),
                retry_after: None,
            })?;
        let a = read_answer(resp).await;
        let region = match (&a.bucket_region, a.status) {
            (Some(r), _) if !r.is_empty() => r.clone(),
            (_, 404) => {
                return Err(ObjResult::Pause {
                    status: 404,
                    error: format!(
                        "S3 bucket {} does not exist (404 NoSuchBucket)",
                        self.bucket
                    ),
                });
            }
            (_, s) if s == 429 || s >= 500 => {
                return Err(ObjResult::Retry {
                    status: Some(s),
                    error: format!(
                        "S3 answered {} while finding the bucket's region",
                        a.describe()
                    ),
                    retry_after: a.retry_after,
                });
            }
            // No header (S3-compatible stores, or a 200 from us-east-1's endpoint): us-east-1.
            _ => "us-east-1".to_string(),
        };
        *self.detected_region.lock().expect("poisoned") = Some(region.clone());
        Ok(region)
    }

    fn forget_region(&self) -> bool {
        self.region.is_none()
            && self
                .detected_region
                .lock()
                .expect("poisoned")
                .take()
                .is_some()
    }

    async fn credentials(&self) -> Result<Credentials, ObjResult> {
        self.creds.get().await.map_err(|e| {
            if e.transient {
                ObjResult::Retry {
                    status: e.status,
                    error: e.message,
                    retry_after: None,
                }
            } else {
                ObjResult::Pause {
                    status: e.status.unwrap_or(403),
                    error: e.message,
                }
            }
        })
    }

    /// Classifies a non-2xx S3 answer to a request in `region`.
    async fn classify(&self, a: &Answer, region: &str) -> ObjResult {
        let code = a.code.as_str();
        let wrong_region = matches!(a.status, 301 | 307)
            || code == "PermanentRedirect"
            || code == "AuthorizationHeaderMalformed"
            || (code == "IllegalLocationConstraintException");
        if wrong_region {
            if self.forget_region() {
                return ObjResult::Retry {
                    status: Some(a.status),
                    error: format!(
                        "S3 bucket {} is not in region {region} ({}); finding its region again",
                        self.bucket,
                        a.describe()
                    ),
                    retry_after: None,
                };
            }
            let hint = a
                .bucket_region
                .as_deref()
                .map(|r| format!("; the bucket is in {r}, set config.region to it"))
                .unwrap_or_default();
            return ObjResult::Pause {
                status: a.status,
                error: format!(
                    "S3 bucket {} is not in config.region {region} ({}){hint}",
                    self.bucket,
                    a.describe()
                ),
            };
        }
        let expired = matches!(
            code,
            "ExpiredToken" | "TokenRefreshRequired" | "InvalidToken"
        );
        if expired && matches!(self.creds, CredentialSource::AssumeRole(_)) {
            self.creds.invalidate().await;
            return ObjResult::Retry {
                status: Some(a.status),
                error: format!(
                    "S3 said the role session expired ({}); assuming the role again",
                    a.describe()
                ),
                retry_after: None,
            };
        }
        if a.status == 401 || a.status == 403 || expired || code == "InvalidAccessKeyId" {
            return ObjResult::Pause {
                status: a.status,
                error: self.auth_message(a),
            };
        }
        if code == "NoSuchBucket" {
            return ObjResult::Pause {
                status: a.status,
                error: format!(
                    "S3 bucket {} does not exist ({})",
                    self.bucket,
                    a.describe()
                ),
            };
        }
        let retryable = matches!(a.status, 408 | 409 | 429)
            || a.status >= 500
            || matches!(
                code,
                "RequestTimeout" | "RequestTimeTooSkewed" | "SlowDown" | "OperationAborted"
            );
        if retryable {
            return ObjResult::Retry {
                status: Some(a.status),
                error: format!("S3 answered {}", a.describe()),
                retry_after: a.retry_after,
            };
        }
        ObjResult::Reject {
            status: a.status,
            error: format!("S3 rejected the object ({})", a.describe()),
        }
    }

    /// A sentence naming what S3 refused.
    fn auth_message(&self, a: &Answer) -> String {
        let what = match a.code.as_str() {
            "SignatureDoesNotMatch" => "S3 rejected the secret access key".to_string(),
            // AWS says InvalidAccessKeyId; some S3-compatible servers say NotSignedUp.
            "InvalidAccessKeyId" | "NotSignedUp" => "S3 rejected the access key ID".to_string(),
            "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired" => {
                "S3 rejected the session token".to_string()
            }
            "AccessDenied" => format!(
                "S3 denied s3:PutObject on bucket {} to these credentials",
                self.bucket
            ),
            _ => format!("S3 refused the credentials for bucket {}", self.bucket),
        };
        format!("{what} ({})", a.describe())
    }

    /// PUTs one object.
    async fn put(&self, creds: &Credentials, region: &str, key: &str, body: Bytes) -> ObjResult {
        let url = self.url(region, Some(key));
        match self
            .request(creds, region, Method::PUT, &url, Some(body))
            .await
        {
            Ok(resp) if resp.status().is_success() => ObjResult::Ok,
            Ok(resp) => {
                let a = read_answer(resp).await;
                self.classify(&a, region).await
            }
            Err(e) => match crate::http::transport_error(&e) {
                Outcome::Retry { error, .. } => ObjResult::Retry {
                    status: None,
                    error: format!("S3 could not be reached: {error}"),
                    retry_after: None,
                },
                _ => ObjResult::Retry {
                    status: None,
                    error: format!("S3 could not be reached: {e}"),
                    retry_after: None,
                },
            },
        }
    }
}

/// Whether a bucket name works as a host name label under `*.s3.<region>.amazonaws.com` with
/// TLS (no dots: the wildcard certificate covers one label only).
fn dns_compatible(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !bucket.starts_with('-')
        && !bucket.ends_with('-')
}

/// Splits an encoded batch into `(key, document)` pairs.
fn split_batch(body: &Bytes) -> Option<Vec<(String, Bytes)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let rest = &body[pos..];
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let key = std::str::from_utf8(&rest[..nl]).ok()?.to_string();
        let rest2 = &rest[nl + 1..];
        let nl2 = rest2.iter().position(|&b| b == b'\n')?;
        let len: usize = std::str::from_utf8(&rest2[..nl2]).ok()?.parse().ok()?;
        let start = pos + nl + 1 + nl2 + 1;
        let end = start.checked_add(len)?;
        if end > body.len() {
            return None;
        }
        out.push((key, body.slice(start..end)));
        pos = end;
    }
    Some(out)
}

/// One outcome for a batch from the per-object results.
fn aggregate(results: Vec<ObjResult>) -> Outcome {
    if let Some(ObjResult::Pause { status, error }) = results
        .iter()
        .find(|r| matches!(r, ObjResult::Pause { .. }))
    {
        return Outcome::Unauthorized {
            status: *status,
            error: error.clone(),
        };
    }
    if results.iter().all(|r| *r == ObjResult::Ok) {
        return Outcome::Delivered;
    }
    if results.iter().all(|r| matches!(r, ObjResult::Retry { .. })) {
        let mut status = None;
        let mut error = String::new();
        let mut retry_after: Option<Duration> = None;
        for r in &results {
            if let ObjResult::Retry {
                status: s,
                error: e,
                retry_after: ra,
            } = r
            {
                if error.is_empty() {
                    status = *s;
                    error = e.clone();
                }
                retry_after = retry_after.max(*ra);
            }
        }
        return Outcome::Retry {
            status,
            error,
            retry_after,
        };
    }
    if results.len() == 1
        && let Some(ObjResult::Reject { status, error }) = results.first()
    {
        return Outcome::Rejected {
            status: Some(*status),
            error: error.clone(),
        };
    }
    Outcome::Partial(
        results
            .into_iter()
            .map(|r| match r {
                ObjResult::Ok => ItemOutcome::Delivered,
                ObjResult::Retry { error, .. } => ItemOutcome::Retry { error },
                ObjResult::Reject { error, .. } | ObjResult::Pause { error, .. } => {
                    ItemOutcome::Rejected { error }
                }
            })
            .collect(),
    )
}

fn into_outcome(r: ObjResult) -> Outcome {
    aggregate(vec![r])
}

#[async_trait]
impl Exporter for S3Exporter {
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: MAX_ITEMS,
            max_bytes: MAX_BYTES,
        }
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        let mut body = Vec::new();
        for t in traces {
            let key = self.inner.layout.key(&KeyInputs::of(t));
            let doc = serde_json::to_vec(&document(t))
                .map_err(|e| ExportError::Encode(format!("trace {}: {e}", t.id())))?;
            body.extend_from_slice(key.as_bytes());
            body.push(b'\n');
            body.extend_from_slice(doc.len().to_string().as_bytes());
            body.push(b'\n');
            body.extend_from_slice(&doc);
        }
        Ok(Payload {
            body: Bytes::from(body),
            content_type: BATCH_CONTENT_TYPE,
            items: traces.len(),
        })
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        let Some(objects) = split_batch(&payload.body) else {
            return Outcome::Rejected {
                status: None,
                error: "s3: malformed encoded batch".into(),
            };
        };
        let creds = match self.inner.credentials().await {
            Ok(c) => c,
            Err(r) => return into_outcome(r),
        };
        let region = match self.inner.region(&creds).await {
            Ok(r) => r,
            Err(r) => return into_outcome(r),
        };
        let mut set = tokio::task::JoinSet::new();
        for (i, (key, body)) in objects.into_iter().enumerate() {
            let inner = self.inner.clone();
            let creds = creds.clone();
            let region = region.clone();
            set.spawn(async move { (i, inner.put(&creds, &region, &key, body).await) });
        }
        let mut results = vec![
            ObjResult::Retry {
                status: None,
                error: "s3: the upload task failed".into(),
                retry_after: None,
            };
            set.len()
        ];
        while let Some(done) = set.join_next().await {
            if let Ok((i, r)) = done
                && let Some(slot) = results.get_mut(i)
            {
                *slot = r;
            }
        }
        aggregate(results)
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let inner = &self.inner;
        let fail = |r: ObjResult| match r {
            ObjResult::Retry { status, error, .. } => ConnectionCheck::failed(status, error),
            ObjResult::Pause { status, error } | ObjResult::Reject { status, error } => {
                ConnectionCheck::failed(Some(status), error)
            }
            ObjResult::Ok => ConnectionCheck::failed(None, "unexpected state"),
        };
        let creds = match inner.credentials().await {
            Ok(c) => c,
            Err(r) => return fail(r),
        };
        let region = match inner.region(&creds).await {
            Ok(r) => r,
            Err(r) => return fail(r),
        };
        let nonce = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_string();
        let key = inner.layout.test_key(&nonce);
        let body = Bytes::from(format!(
            "{{\"tracecast\":\"connection test\",\"note\":\"safe to delete\",\"nonce\":\"{nonce}\"}}"
        ));
        let url = inner.url(&region, Some(&key));
        let status = match inner
            .request(&creds, &region, Method::PUT, &url, Some(body))
            .await
        {
            Err(e) => {
                return ConnectionCheck::unreachable("S3", &crate::http::transport_message(&e));
            }
            Ok(resp) if resp.status().is_success() => resp.status().as_u16(),
            Ok(resp) => {
                let a = read_answer(resp).await;
                let check = match inner.classify(&a, &region).await {
                    ObjResult::Pause { error, .. } => error,
                    ObjResult::Retry { error, .. } | ObjResult::Reject { error, .. } => error,
                    ObjResult::Ok => a.describe(),
                };
                return ConnectionCheck::failed(Some(a.status), check);
            }
        };
        let target = format!("s3://{}/{key}", inner.bucket);
        let provider = inner.provider.name();
        match inner
            .request(&creds, &region, Method::DELETE, &url, None)
            .await
        {
            Ok(resp) if resp.status().is_success() => ConnectionCheck::passed(
                status,
                format!(
                    "S3 ({provider}, region {region}) accepted a test object at {target}, which was then deleted"
                ),
            ),
            Ok(resp) => {
                let a = read_answer(resp).await;
                ConnectionCheck::passed(
                    status,
                    format!(
                        "S3 ({provider}, region {region}) accepted a test object at {target}; deleting it failed ({}), so delete it by hand or allow s3:DeleteObject",
                        a.describe()
                    ),
                )
            }
            Err(e) => ConnectionCheck::passed(
                status,
                format!(
                    "S3 ({provider}, region {region}) accepted a test object at {target}; deleting it failed ({e}), so delete it by hand"
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_framing_round_trips() {
        let body = Bytes::from_static(b"a/b.json\n2\n{}c.json\n7\n{\"x\":1}");
        let parts = split_batch(&body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            ("a/b.json".to_string(), Bytes::from_static(b"{}"))
        );
        assert_eq!(parts[1].1, Bytes::from_static(b"{\"x\":1}"));
        assert!(split_batch(&Bytes::from_static(b"k\n99\n{}")).is_none());
        assert!(split_batch(&Bytes::from_static(b"k\nxx\n{}")).is_none());
        assert_eq!(split_batch(&Bytes::new()).unwrap().len(), 0);
    }

    #[test]
    fn providers_and_addressing() {
        assert_eq!(Provider::infer(None), Provider::Aws);
        assert_eq!(
            Provider::infer(Some("https://acc.r2.cloudflarestorage.com")),
            Provider::CloudflareR2
        );
        assert_eq!(
            Provider::infer(Some("https://storage.googleapis.com")),
            Provider::Gcs
        );
        assert_eq!(
            Provider::infer(Some("http://127.0.0.1:9000")),
            Provider::Other
        );
        assert!(dns_compatible("my-traces-bucket"));
        assert!(!dns_compatible("my.traces.bucket"));
        assert!(!dns_compatible("Upper"));
    }

    #[test]
    fn aggregation() {
        assert_eq!(
            aggregate(vec![ObjResult::Ok, ObjResult::Ok]),
            Outcome::Delivered
        );
        let retry = |s| ObjResult::Retry {
            status: Some(s),
            error: format!("e{s}"),
            retry_after: Some(Duration::from_secs(s as u64 / 100)),
        };
        assert_eq!(
            aggregate(vec![retry(503), retry(500)]),
            Outcome::Retry {
                status: Some(503),
                error: "e503".into(),
                retry_after: Some(Duration::from_secs(5))
            }
        );
        assert_eq!(
            aggregate(vec![
                ObjResult::Ok,
                retry(503),
                ObjResult::Reject {
                    status: 400,
                    error: "bad".into()
                }
            ]),
            Outcome::Partial(vec![
                ItemOutcome::Delivered,
                ItemOutcome::Retry {
                    error: "e503".into()
                },
                ItemOutcome::Rejected {
                    error: "bad".into()
                }
            ])
        );
        assert!(matches!(
            aggregate(vec![
                ObjResult::Ok,
                ObjResult::Pause {
                    status: 403,
                    error: "no".into()
                }
            ]),
            Outcome::Unauthorized { status: 403, .. }
        ));
    }
}
