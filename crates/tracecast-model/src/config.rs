//! The 19 destination types and the schema of each one's `config` object.
//!
//! Schemas are data ([`FieldSpec`] tables), so validation, default-filling, masking and PATCH
//! merging are written once and apply to every type alike. Keys are camelCase, exactly as
//! OpenRouter's API (and its official SDK `openrouter==1.3.84`, which wins where the published
//! OpenAPI document is older) sends and returns them.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::ValidationError;

/// The destination types of OpenRouter's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationType {
    Arize,
    /// Google BigQuery (OpenRouter's docs and dashboard; not in its API enum yet).
    Bigquery,
    Braintrust,
    Clickhouse,
    Datadog,
    Grafana,
    Langfuse,
    Langsmith,
    Newrelic,
    Opik,
    OtelCollector,
    Posthog,
    /// Raindrop (OpenRouter's docs and dashboard; not in its API enum yet).
    Raindrop,
    Ramp,
    S3,
    Sentry,
    Snowflake,
    Weave,
    Webhook,
}

impl DestinationType {
    pub const ALL: [DestinationType; 19] = [
        Self::Arize,
        Self::Bigquery,
        Self::Braintrust,
        Self::Clickhouse,
        Self::Datadog,
        Self::Grafana,
        Self::Langfuse,
        Self::Langsmith,
        Self::Newrelic,
        Self::Opik,
        Self::OtelCollector,
        Self::Posthog,
        Self::Raindrop,
        Self::Ramp,
        Self::S3,
        Self::Sentry,
        Self::Snowflake,
        Self::Weave,
        Self::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Arize => "arize",
            Self::Bigquery => "bigquery",
            Self::Braintrust => "braintrust",
            Self::Clickhouse => "clickhouse",
            Self::Datadog => "datadog",
            Self::Grafana => "grafana",
            Self::Langfuse => "langfuse",
            Self::Langsmith => "langsmith",
            Self::Newrelic => "newrelic",
            Self::Opik => "opik",
            Self::OtelCollector => "otel-collector",
            Self::Posthog => "posthog",
            Self::Raindrop => "raindrop",
            Self::Ramp => "ramp",
            Self::S3 => "s3",
            Self::Sentry => "sentry",
            Self::Snowflake => "snowflake",
            Self::Weave => "weave",
            Self::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The platform's name as people write it (OpenRouter's dashboard names).
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Arize => "Arize AX",
            Self::Bigquery => "Google BigQuery",
            Self::Braintrust => "Braintrust",
            Self::Clickhouse => "ClickHouse",
            Self::Datadog => "Datadog",
            Self::Grafana => "Grafana Cloud",
            Self::Langfuse => "Langfuse",
            Self::Langsmith => "LangSmith",
            Self::Newrelic => "New Relic",
            Self::Opik => "Comet Opik",
            Self::OtelCollector => "OpenTelemetry Collector",
            Self::Posthog => "PostHog",
            Self::Raindrop => "Raindrop",
            Self::Ramp => "Ramp",
            Self::S3 => "S3 / S3-compatible",
            Self::Sentry => "Sentry",
            Self::Snowflake => "Snowflake",
            Self::Weave => "W&B Weave",
            Self::Webhook => "Webhook",
        }
    }

    /// The field table of this type's `config`.
    pub fn schema(self) -> &'static [FieldSpec] {
        use FieldKind::*;
        const HEADERS: FieldSpec = FieldSpec::optional("headers", Headers).help(
            "Extra HTTP headers sent with every request, the connection test included. Values are kept secret.",
        );
        // tracecast extension: gzip request bodies or not; absent, the type's default
        // (`tracecast_exporters::compression`).
        const COMPRESSION: FieldSpec = FieldSpec::optional("compression", Enum(&["gzip", "none"]))
            .help("Compress request bodies with gzip, or send them as they are. Left empty, the platform's default (gzip where it accepts it).");
        match self {
            Self::Arize => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("apiKey").help("The Arize AX API key."),
                    FieldSpec::secret("spaceKey")
                        .help("The space key (space ID) from the space's settings."),
                    FieldSpec::required("modelId", Text)
                        .help("The project name traces are logged under."),
                    FieldSpec::with_default("baseUrl", Url, "https://otlp.arize.com")
                        .help("Arize's OTLP endpoint."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Bigquery => {
                const S: &[FieldSpec] = &[
                    FieldSpec::required("projectId", Pattern(GCP_PROJECT))
                        .help("The Google Cloud project ID that holds the dataset (the lower-case ID, not the project's name)."),
                    FieldSpec::secret("serviceAccountKey")
                        .help("The complete contents of the service account's JSON key file.")
                        .multiline(),
                    FieldSpec::with_default("dataset", Pattern(BIGQUERY_DATASET), "openrouter")
                        .help("The dataset ID."),
                    FieldSpec::with_default("table", Pattern(BIGQUERY_TABLE), "openrouter_traces")
                        .help("The table ID. Create the table first (setup instructions below)."),
                    HEADERS,
                ];
                S
            }
            Self::Braintrust => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("apiKey").help("A Braintrust API key."),
                    FieldSpec::required("projectId", Text)
                        .help("The ID of the project whose logs receive the spans."),
                    FieldSpec::with_default("baseUrl", Url, "https://api.braintrust.dev")
                        .help("The API base URL: https://api-eu.braintrust.dev in the EU, or a self-hosted data plane."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Clickhouse => {
                const S: &[FieldSpec] = &[
                    FieldSpec::required("host", Url)
                        .help("The HTTP(S) endpoint, such as https://clickhouse.example.com:8443 (plain HTTP: port 8123)."),
                    FieldSpec::required("database", Identifier)
                        .help("The database of the table, such as default."),
                    FieldSpec::required("username", Text).help("The ClickHouse user."),
                    FieldSpec::secret("password").help("The user's password."),
                    FieldSpec::with_default("table", Identifier, "OPENROUTER_TRACES")
                        .help("The table name. Create the table first (setup instructions below)."),
                    FieldSpec::with_bool_default("shouldIncludeCacheWriteTokens", false)
                        .help("Schema v2: also write cache-write tokens (the table needs the CACHE_WRITE_TOKENS column)."),
                    HEADERS,
                ];
                S
            }
            Self::Datadog => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("apiKey")
                        .help("A Datadog API key (Organization Settings > API Keys)."),
                    FieldSpec::required("mlApp", Text)
                        .help("The LLM Observability ML application name."),
                    FieldSpec::with_default("url", Url, "https://api.datadoghq.com")
                        .help("Your Datadog site's API URL, such as https://api.datadoghq.eu."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Grafana => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("apiKey")
                        .help("A Grafana Cloud access-policy token with the traces:write scope."),
                    FieldSpec::required("instanceId", Pattern(GRAFANA_INSTANCE))
                        .help("The numeric instance ID from the stack's OpenTelemetry card."),
                    FieldSpec::with_default(
                        "baseUrl",
                        Url,
                        "https://otlp-gateway-prod-us-west-0.grafana.net",
                    )
                    .help(
                        "The stack's OTLP gateway, https://otlp-gateway-prod-<region>.grafana.net.",
                    ),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Langfuse => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("publicKey").help("The project's public key (pk-lf-...)."),
                    FieldSpec::secret("secretKey").help("The project's secret key (sk-lf-...)."),
                    FieldSpec::with_default("baseUrl", Url, "https://us.cloud.langfuse.com")
                        .help("The Langfuse host: https://cloud.langfuse.com (EU), https://us.cloud.langfuse.com (US) or your own."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Langsmith => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("apiKey").help("A LangSmith API key."),
                    FieldSpec::with_default("endpoint", Url, "https://api.smith.langchain.com")
                        .help("The LangSmith API URL of your region or self-hosted instance."),
                    FieldSpec::with_default("project", Text, "main")
                        .help("The project the runs land in (created on first use)."),
                    FieldSpec::optional("workspaceId", Text)
                        .help("The workspace ID, for API keys that reach several workspaces."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Newrelic => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("licenseKey").help("An Ingest - License key of the account."),
                    FieldSpec::with_default("region", Enum(&["us", "eu"]), "us")
                        .credential_target()
                        .help("The account's data center."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Opik => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("apiKey").help("Your Comet API key (Settings > API Keys)."),
                    FieldSpec::required("workspace", Text).help("The Comet workspace name."),
                    FieldSpec::required("projectName", Text).help(
                        "The Opik project traces are logged to (created on the first trace).",
                    ),
                    HEADERS,
                ];
                S
            }
            Self::OtelCollector => {
                const S: &[FieldSpec] = &[
                    FieldSpec::required("endpoint", Url).help(
                        "The collector's full OTLP/HTTP traces URL, usually ending in /v1/traces.",
                    ),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Posthog => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("apiKey").help("The project API key (phc_...)."),
                    FieldSpec::with_default("endpoint", Url, "https://us.i.posthog.com").help(
                        "The ingestion host: https://eu.i.posthog.com for EU Cloud, or your own.",
                    ),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Raindrop => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("writeKey")
                        .help("The project's write key (Raindrop Settings)."),
                    FieldSpec::with_default("baseUrl", Url, "https://api.raindrop.ai")
                        .help("Change only for a custom endpoint."),
                    HEADERS,
                ];
                S
            }
            Self::Ramp => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("apiKey")
                        .help("The key from Generate API Key on Ramp's OpenRouter integration."),
                    FieldSpec::with_default(
                        "baseUrl",
                        Url,
                        "https://api.ramp.com/developer/v1/ai-usage/openrouter",
                    )
                    .help("Change only if Ramp tells you to."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::S3 => {
                const S: &[FieldSpec] = &[
                    FieldSpec::required("bucketName", Text)
                        .help("The bucket, which must exist."),
                    FieldSpec::with_default(
                        "authMode",
                        Enum(&["access_keys", "iam_role"]),
                        "access_keys",
                    )
                    .help("access_keys: the key pair below; iam_role: tracecast assumes the role below."),
                    FieldSpec::optional_secret("accessKeyId")
                        .help("Access key ID (needed with access_keys)."),
                    FieldSpec::optional_secret("secretAccessKey")
                        .help("Secret access key (needed with access_keys)."),
                    FieldSpec::optional_secret("sessionToken")
                        .help("Session token of temporary credentials."),
                    FieldSpec::optional("roleArn", Pattern(ROLE_ARN))
                        .help("The role to assume (needed with iam_role)."),
                    FieldSpec::optional("externalId", Text).server_issued().help(
                        "Issued by tracecast, one per workspace: put it in the role's trust policy.",
                    ),
                    FieldSpec::optional("region", Pattern(AWS_REGION))
                        .credential_target()
                        .help("The region requests are signed for, such as eu-west-1; auto for R2 and GCS."),
                    FieldSpec::optional("endpoint", Url)
                        .help("Base URL of an S3-compatible service (needed for cloudflare_r2 and other)."),
                    FieldSpec::optional(
                        "provider",
                        Enum(&["aws", "cloudflare_r2", "gcs", "other"]),
                    )
                    .credential_target()
                    .help("Inferred from the endpoint when unset."),
                    FieldSpec::with_default("prefix", Text, "openrouter-traces")
                        .help("The value of {prefix} in the path template."),
                    FieldSpec::with_default("pathTemplate", PathTemplate, "{prefix}/{date}")
                        .help("Where objects go; variables {prefix}, {date}, {year}, {month}, {day}, {apiKeyName}."),
                    HEADERS,
                ];
                S
            }
            Self::Sentry => {
                const S: &[FieldSpec] = &[
                    FieldSpec::required("otlpEndpoint", Url).help(
                        "The project's OTLP traces endpoint (Client Keys (DSN) > OpenTelemetry).",
                    ),
                    FieldSpec {
                        secret: true,
                        ..FieldSpec::required("dsn", Pattern(SENTRY_DSN))
                    }
                    .help("The project's DSN, https://<key>@o123.ingest.sentry.io/456."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Snowflake => {
                const S: &[FieldSpec] = &[
                    FieldSpec::required("account", Pattern(SNOWFLAKE_ACCOUNT))
                        .credential_target()
                        .help("The account identifier, such as xy12345.us-east-1 or myorg-myaccount."),
                    FieldSpec::secret("token").help("A programmatic access token."),
                    FieldSpec::with_default("database", Identifier, "SNOWFLAKE_LEARNING_DB")
                        .help("The database of the table."),
                    FieldSpec::with_default("schema", Identifier, "PUBLIC")
                        .help("The schema of the table."),
                    FieldSpec::with_default("table", Identifier, "OPENROUTER_TRACES")
                        .help("The table name. Create the table first (setup instructions below)."),
                    FieldSpec::with_default("warehouse", Identifier, "COMPUTE_WH")
                        .help("The warehouse that runs the inserts."),
                    FieldSpec::with_bool_default("shouldIncludeCacheWriteTokens", false)
                        .help("Schema v2: also write cache-write tokens (the table needs the CACHE_WRITE_TOKENS column)."),
                    HEADERS,
                ];
                S
            }
            Self::Weave => {
                const S: &[FieldSpec] = &[
                    FieldSpec::secret("apiKey").help("Your W&B API key (User Settings)."),
                    FieldSpec::required("entity", Text).help("Your W&B user or team name."),
                    FieldSpec::required("project", Text)
                        .help("The Weave project calls are logged to."),
                    FieldSpec::with_default("baseUrl", Url, "https://trace.wandb.ai")
                        .help("The Weave trace server; dedicated W&B: https://<host>/traces."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
            Self::Webhook => {
                const S: &[FieldSpec] = &[
                    FieldSpec::required("url", Url).help(
                        "Where to send the traces (OTLP/JSON). Put credentials in the headers.",
                    ),
                    FieldSpec::with_default("method", Enum(&["POST", "PUT"]), "POST")
                        .help("The HTTP method."),
                    HEADERS,
                    COMPRESSION,
                ];
                S
            }
        }
    }
}

impl std::fmt::Display for DestinationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named regular expression used by [`FieldKind::Pattern`].
pub struct NamedPattern {
    pub regex: fn() -> &'static Regex,
    pub describe: &'static str,
}

macro_rules! pattern {
    ($name:ident, $re:literal, $describe:literal) => {
        const $name: NamedPattern = NamedPattern {
            regex: || {
                static RE: LazyLock<Regex> = LazyLock::new(|| Regex::new($re).unwrap());
                &RE
            },
            describe: $describe,
        };
    };
}

pattern!(
    SENTRY_DSN,
    r"^https://([^:@]+)(?::[^@]*)?@([^/]+)(?:/[^/]+)*/(\d+)/?$",
    "a Sentry DSN such as https://<key>@o123.ingest.sentry.io/456"
);
pattern!(
    SNOWFLAKE_ACCOUNT,
    r"^[a-zA-Z0-9_]+(?:[.-][a-zA-Z0-9_]+)*$",
    "a Snowflake account identifier such as xy12345.us-east-1"
);
pattern!(
    GRAFANA_INSTANCE,
    r"^[0-9]+$",
    "the numeric Grafana Cloud instance id"
);
pattern!(
    ROLE_ARN,
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$",
    "an IAM role ARN such as arn:aws:iam::123456789012:role/tracecast"
);
pattern!(
    AWS_REGION,
    r"^[a-z0-9-]{1,64}$",
    "a region name such as us-east-1 or auto"
);
pattern!(
    GCP_PROJECT,
    r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$",
    "a Google Cloud project ID such as my-gcp-project (6-30 lower-case letters, digits and hyphens)"
);
pattern!(
    BIGQUERY_DATASET,
    r"^[A-Za-z0-9_]{1,1024}$",
    "a BigQuery dataset ID (letters, digits and underscores)"
);
pattern!(
    BIGQUERY_TABLE,
    r"^[A-Za-z0-9_-]{1,1024}$",
    "a BigQuery table ID (letters, digits, underscores and hyphens)"
);
static IDENTIFIER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$").unwrap());
static HEADER_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$").unwrap());

/// Variables a `pathTemplate` may use.
pub const PATH_TEMPLATE_VARS: [&str; 6] = ["prefix", "date", "year", "month", "day", "apiKeyName"];

/// What kind of value a config field holds.
pub enum FieldKind {
    /// A non-empty string.
    Text,
    /// An absolute http(s) URL.
    Url,
    /// A SQL identifier (database, schema, table or warehouse name).
    Identifier,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A string matching a pattern.
    Pattern(NamedPattern),
    /// An S3 key template using [`PATH_TEMPLATE_VARS`].
    PathTemplate,
    /// A boolean.
    Bool,
    /// A map from header name to header value (values are secret).
    Headers,
}

/// One field of a destination type's `config`.
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    pub required: bool,
    pub default: Option<DefaultValue>,
    /// Secret fields are encrypted at rest like the rest of the config and masked in responses.
    pub secret: bool,
    /// Marks a non-URL field that decides where the credentials are sent (an account, a
    /// region, a provider). Every [`FieldKind::Url`] field is a credential target without it;
    /// see [`FieldSpec::is_credential_target`].
    pub target: bool,
    /// One sentence for the person filling the field in (the dashboard's forms show it).
    pub help: &'static str,
    /// The value is usually several lines (a key file): forms offer a text area.
    pub multiline: bool,
    /// The server sets the value itself ([`S3_EXTERNAL_ID`]); forms show it read-only.
    pub server_issued: bool,
}

#[derive(Clone, Copy)]
pub enum DefaultValue {
    Str(&'static str),
    Bool(bool),
}

impl FieldSpec {
    const fn required(name: &'static str, kind: FieldKind) -> Self {
        FieldSpec {
            name,
            kind,
            required: true,
            default: None,
            secret: false,
            target: false,
            help: "",
            multiline: false,
            server_issued: false,
        }
    }
    /// Adds the field's help text.
    const fn help(self, help: &'static str) -> Self {
        FieldSpec { help, ..self }
    }
    /// Marks the field as multi-line (see [`FieldSpec::multiline`]).
    const fn multiline(self) -> Self {
        FieldSpec {
            multiline: true,
            ..self
        }
    }
    /// Marks the field as set by the server (see [`FieldSpec::server_issued`]).
    const fn server_issued(self) -> Self {
        FieldSpec {
            server_issued: true,
            ..self
        }
    }
    /// Marks the field as deciding where the credentials go (see [`FieldSpec::target`]).
    const fn credential_target(self) -> Self {
        FieldSpec {
            target: true,
            ..self
        }
    }
    /// Whether changing this field changes where the destination's credentials are sent: a
    /// URL or host (every [`FieldKind::Url`] field, so types added later are covered), or a
    /// field marked with `credential_target` (account, region, provider). A PATCH that
    /// changes one must send every secret again ([`merge`]).
    pub fn is_credential_target(&self) -> bool {
        self.target || matches!(self.kind, FieldKind::Url)
    }
    const fn optional(name: &'static str, kind: FieldKind) -> Self {
        FieldSpec {
            required: false,
            ..Self::required(name, kind)
        }
    }
    const fn secret(name: &'static str) -> Self {
        FieldSpec {
            secret: true,
            ..Self::required(name, FieldKind::Text)
        }
    }
    const fn optional_secret(name: &'static str) -> Self {
        FieldSpec {
            secret: true,
            ..Self::optional(name, FieldKind::Text)
        }
    }
    const fn with_default(name: &'static str, kind: FieldKind, default: &'static str) -> Self {
        FieldSpec {
            default: Some(DefaultValue::Str(default)),
            ..Self::optional(name, kind)
        }
    }
    const fn with_bool_default(name: &'static str, default: bool) -> Self {
        FieldSpec {
            default: Some(DefaultValue::Bool(default)),
            ..Self::optional(name, FieldKind::Bool)
        }
    }
}

/// Validates a `config` object for `ty` and returns it normalised: defaults filled in,
/// explicit nulls on optional fields dropped.
pub fn validate(
    ty: DestinationType,
    config: &Value,
) -> Result<Map<String, Value>, ValidationError> {
    let obj = config
        .as_object()
        .ok_or_else(|| ValidationError::new(format!("config must be an object for type {ty}")))?;
    let schema = ty.schema();
    if let Some(unknown) = obj
        .keys()
        .find(|k| !schema.iter().any(|f| f.name == k.as_str()))
    {
        let known: Vec<&str> = schema.iter().map(|f| f.name).collect();
        return Err(ValidationError::new(format!(
            "config.{unknown} is not a valid field for type {ty} (valid fields: {})",
            known.join(", ")
        )));
    }
    let mut out = Map::new();
    for field in schema {
        match obj.get(field.name) {
            None | Some(Value::Null) => {
                if field.required {
                    return Err(ValidationError::new(format!(
                        "config.{} is required for type {ty}",
                        field.name
                    )));
                }
                match field.default {
                    Some(DefaultValue::Str(s)) => {
                        out.insert(field.name.into(), Value::String(s.into()));
                    }
                    Some(DefaultValue::Bool(b)) => {
                        out.insert(field.name.into(), Value::Bool(b));
                    }
                    None => {}
                }
            }
            Some(v) => {
                check_value(ty, field, v)?;
                out.insert(field.name.into(), v.clone());
            }
        }
    }
    check_cross_field(ty, &out)?;
    Ok(out)
}

fn check_value(ty: DestinationType, field: &FieldSpec, v: &Value) -> Result<(), ValidationError> {
    let name = field.name;
    if let FieldKind::Bool = field.kind {
        return match v {
            Value::Bool(_) => Ok(()),
            _ => Err(ValidationError::new(format!(
                "config.{name} must be a boolean"
            ))),
        };
    }
    if let FieldKind::Headers = field.kind {
        let map = v.as_object().ok_or_else(|| {
            ValidationError::new(
                "config.headers must be an object mapping header names to string values",
            )
        })?;
        for (k, hv) in map {
            if !HEADER_NAME.is_match(k) {
                return Err(ValidationError::new(format!(
                    "config.headers: {k:?} is not a valid HTTP header name"
                )));
            }
            let s = hv.as_str().ok_or_else(|| {
                ValidationError::new(format!("config.headers.{k} must be a string"))
            })?;
            if is_transport_header(k) {
                return Err(ValidationError::new(format!(
                    "config.headers.{k} cannot be set: tracecast sets the transport headers (Host, Content-Length, Transfer-Encoding, Connection, Upgrade, TE, Trailer, Keep-Alive, Proxy-*)"
                )));
            }
            // What HTTP allows in a field value (RFC 9110 5.5): no control character but tab.
            if s.chars().any(|c| c.is_ascii_control() && c != '\t') {
                return Err(ValidationError::new(format!(
                    "config.headers.{k} must not contain control characters (line breaks, NUL, ...)"
                )));
            }
        }
        return Ok(());
    }
    let s = v
        .as_str()
        .ok_or_else(|| ValidationError::new(format!("config.{name} must be a string")))?;
    if s.trim().is_empty() {
        let what = if field.required {
            "is required for type"
        } else {
            "must not be empty for type"
        };
        return Err(ValidationError::new(format!("config.{name} {what} {ty}")));
    }
    if s.len() > 8192 {
        return Err(ValidationError::new(format!(
            "config.{name} must be at most 8192 bytes"
        )));
    }
    match &field.kind {
        FieldKind::Text => Ok(()),
        // Datadog's `url` is the site: the exporter appends the intake paths, so a query or a
        // fragment would let the config choose the request path.
        FieldKind::Url => check_url(name, s, !(ty == DestinationType::Datadog && name == "url")),
        FieldKind::Identifier => {
            if IDENTIFIER.is_match(s) {
                Ok(())
            } else {
                Err(ValidationError::new(format!(
                    "config.{name} must be a plain identifier (letters, digits and underscores, not starting with a digit), got {s:?}"
                )))
            }
        }
        FieldKind::Enum(options) => {
            if options.contains(&s) {
                Ok(())
            } else {
                Err(ValidationError::new(format!(
                    "config.{name} must be one of {}, got {s:?}",
                    options.join(", ")
                )))
            }
        }
        FieldKind::Pattern(p) => {
            if (p.regex)().is_match(s) {
                Ok(())
            } else if field.secret {
                Err(ValidationError::new(format!(
                    "config.{name} must be {}",
                    p.describe
                )))
            } else {
                Err(ValidationError::new(format!(
                    "config.{name} must be {}, got {s:?}",
                    p.describe
                )))
            }
        }
        FieldKind::PathTemplate => check_path_template(name, s),
        FieldKind::Bool | FieldKind::Headers => unreachable!("handled above"),
    }
}

/// Header names tracecast's HTTP client owns: a custom value would break framing or routing
/// (request smuggling, another virtual host) or could never be sent.
pub fn is_transport_header(name: &str) -> bool {
    const RESERVED: [&str; 8] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
    ];
    let lower = name.to_ascii_lowercase();
    RESERVED.contains(&lower.as_str()) || lower.starts_with("proxy-")
}

/// An absolute http(s) URL with a host, no `user:password@` (credentials belong in the
/// credential fields or the headers, where they are kept secret) and no fragment; a query
/// only when `query_allowed`. Messages quote the value only when it holds no credentials.
fn check_url(name: &str, s: &str, query_allowed: bool) -> Result<(), ValidationError> {
    let bad = || {
        ValidationError::new(format!(
            "config.{name} must be an absolute http(s) URL, got {s:?}"
        ))
    };
    let Ok(url) = url::Url::parse(s) else {
        if s.contains('@') {
            return Err(ValidationError::new(format!(
                "config.{name} must be an absolute http(s) URL"
            )));
        }
        return Err(bad());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ValidationError::new(format!(
            "config.{name} must not contain credentials (user:password@): put them in the destination's credential fields or headers"
        )));
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if url.fragment().is_some() {
        return Err(ValidationError::new(format!(
            "config.{name} must not contain a fragment (#...), got {s:?}"
        )));
    }
    if !query_allowed && url.query().is_some() {
        return Err(ValidationError::new(format!(
            "config.{name} must not contain a query (?...): it is the site's base URL, got {s:?}"
        )));
    }
    Ok(())
}

fn check_path_template(name: &str, s: &str) -> Result<(), ValidationError> {
    let mut rest = s;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(ValidationError::new(format!(
                "config.{name} has an unmatched '}}' in {s:?}"
            )));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            ValidationError::new(format!("config.{name} has an unclosed '{{' in {s:?}"))
        })?;
        let var = &after[..close];
        if !PATH_TEMPLATE_VARS.contains(&var) {
            return Err(ValidationError::new(format!(
                "config.{name} uses unknown variable {{{var}}}; allowed: {}",
                PATH_TEMPLATE_VARS.map(|v| format!("{{{v}}}")).join(", ")
            )));
        }
        rest = &after[close + 1..];
    }
    if s.starts_with('/') {
        return Err(ValidationError::new(format!(
            "config.{name} must not start with '/'"
        )));
    }
    Ok(())
}

fn check_cross_field(ty: DestinationType, cfg: &Map<String, Value>) -> Result<(), ValidationError> {
    if ty == DestinationType::Bigquery
        && let Some(key) = cfg.get("serviceAccountKey").and_then(Value::as_str)
    {
        check_service_account_key(key)?;
    }
    if ty == DestinationType::S3 {
        let has = |k: &str| cfg.get(k).is_some_and(|v| !v.is_null());
        match cfg.get("authMode").and_then(Value::as_str) {
            Some("iam_role") => {
                if !has("roleArn") {
                    return Err(ValidationError::new(
                        "config.roleArn is required for type s3 when config.authMode is iam_role",
                    ));
                }
            }
            _ => {
                for k in ["accessKeyId", "secretAccessKey"] {
                    if !has(k) {
                        return Err(ValidationError::new(format!(
                            "config.{k} is required for type s3 when config.authMode is access_keys"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The S3 field the server issues itself: the `ExternalId` passed to STS `AssumeRole`.
///
/// AWS's guidance for third parties that assume their customers' roles ("confused deputy"
/// prevention, <https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html>) is that
/// the third party, not the customer, generates the external ID, unique per customer. A tenant
/// that could choose it could make the server's own AWS identity assume another tenant's role
/// by naming that role and its ExternalId. So the server issues one per workspace; it is shown
/// in the config (read-only) for the role's trust policy.
pub const S3_EXTERNAL_ID: &str = "externalId";

/// Puts the workspace's server-issued ExternalId into an S3 config whose `authMode` is
/// `iam_role` (the only mode that assumes a role); any other type is left alone. An S3 config
/// in another mode, or with no issued id (`None`), loses any stored value, so no tenant-chosen
/// ExternalId is ever used.
pub fn set_server_external_id(
    ty: DestinationType,
    cfg: &mut Map<String, Value>,
    issued: Option<&str>,
) {
    if ty != DestinationType::S3 {
        return;
    }
    let assumes_role = cfg.get("authMode").and_then(Value::as_str) == Some("iam_role");
    match issued {
        Some(id) if assumes_role => {
            cfg.insert(S3_EXTERNAL_ID.into(), Value::String(id.to_string()));
        }
        _ => {
            cfg.remove(S3_EXTERNAL_ID);
        }
    }
}

/// The fields of a Google service-account key file (JSON) that the `bigquery` exporter uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    #[serde(rename = "type")]
    pub key_type: Option<String>,
    pub client_email: String,
    pub private_key: String,
    pub private_key_id: Option<String>,
    /// Where the signed JWT is exchanged for an access token (Google's default when absent).
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// Google's OAuth 2.0 token endpoint, the `token_uri` of every service-account key it issues.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

fn default_token_uri() -> String {
    GOOGLE_TOKEN_URI.to_string()
}

impl ServiceAccountKey {
    /// Parses and checks a key file's text. Errors name the field, never a value.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "config.serviceAccountKey";
        let v: Value = serde_json::from_str(text).map_err(|_| {
            ValidationError::new(format!(
                "{FIELD} must be the complete contents of the service-account JSON key file (it is not JSON)"
            ))
        })?;
        if !v.is_object() {
            return Err(ValidationError::new(format!(
                "{FIELD} must be a JSON object (the downloaded key file)"
            )));
        }
        for k in ["client_email", "private_key"] {
            if v.get(k)
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                return Err(ValidationError::new(format!(
                    "{FIELD}.{k} is required (a string) in the service-account key"
                )));
            }
        }
        let key: ServiceAccountKey = serde_json::from_value(v).map_err(|_| {
            ValidationError::new(format!(
                "{FIELD}: type, client_email, private_key, private_key_id and token_uri must be strings"
            ))
        })?;
        if key
            .key_type
            .as_deref()
            .is_some_and(|t| t != "service_account")
        {
            return Err(ValidationError::new(format!(
                "{FIELD}.type must be \"service_account\" (a user or external-account credential cannot be used)"
            )));
        }
        if !key.private_key.trim_start().starts_with("-----BEGIN") {
            return Err(ValidationError::new(format!(
                "{FIELD}.private_key must be a PEM private key (-----BEGIN PRIVATE KEY-----...)"
            )));
        }
        check_url("serviceAccountKey.token_uri", &key.token_uri, false)?;
        Ok(key)
    }
}

fn check_service_account_key(text: &str) -> Result<(), ValidationError> {
    ServiceAccountKey::parse(text).map(|_| ())
}

/// Masks a secret for display: the first 4 characters, `...`, then the last 4. Secrets shorter
/// than 12 characters show nothing but `********`.
pub fn mask_secret(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 12 {
        return "********".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

/// Whether `s` has the shape [`mask_secret`] produces. PATCH treats such values as
/// "keep the current value", so a client can send back what it read.
pub fn looks_masked(s: &str) -> bool {
    if !s.is_empty() && s.chars().all(|c| c == '*') {
        return true;
    }
    match s.find("...") {
        Some(i) => {
            let head = &s[..i];
            let tail = &s[i + 3..];
            head.chars().count() <= 12 && tail.chars().count() == 4 && !tail.contains('.')
        }
        None => false,
    }
}

/// The config as shown to API clients: secret fields and every header value masked.
pub fn masked(ty: DestinationType, cfg: &Map<String, Value>) -> Map<String, Value> {
    let mut out = cfg.clone();
    for field in ty.schema() {
        let Some(v) = out.get_mut(field.name) else {
            continue;
        };
        match field.kind {
            FieldKind::Headers => {
                if let Some(map) = v.as_object_mut() {
                    for hv in map.values_mut() {
                        if let Some(s) = hv.as_str() {
                            *hv = Value::String(mask_secret(s));
                        }
                    }
                }
            }
            _ if field.secret => {
                if let Some(s) = v.as_str() {
                    *v = Value::String(mask_secret(s));
                }
            }
            _ => {}
        }
    }
    out
}

/// Applies a PATCH `config` to the stored one. Fields not sent keep their values; a masked
/// secret (or masked header value) keeps the current value; `null` resets an optional field to
/// its default. The merged result is validated as a whole.
///
/// When the PATCH changes where the credentials go (a [`FieldSpec::is_credential_target`]
/// field: URL, host, account, region, provider), every secret and header value of the merged
/// config must be sent again, unmasked, in the same PATCH: otherwise the stored credentials
/// would be sent to the new address, and anyone holding a management key could read them
/// there. The error names the values to send.
pub fn merge(
    ty: DestinationType,
    current: &Map<String, Value>,
    patch: &Value,
) -> Result<Map<String, Value>, ValidationError> {
    let patch = patch
        .as_object()
        .ok_or_else(|| ValidationError::new("config must be an object"))?;
    let schema = ty.schema();
    let mut merged = current.clone();
    // Secrets (and header names) this PATCH sent with a real, unmasked value.
    let mut resent: Vec<String> = Vec::new();
    for (key, value) in patch {
        let field = schema
            .iter()
            .find(|f| f.name == key.as_str())
            .ok_or_else(|| {
                ValidationError::new(format!("config.{key} is not a valid field for type {ty}"))
            })?;
        match (&field.kind, value) {
            (_, Value::Null) => {
                merged.remove(key);
            }
            (FieldKind::Headers, Value::Object(new_headers)) => {
                let old = current.get(key).and_then(Value::as_object);
                let mut out = Map::new();
                for (name, hv) in new_headers {
                    let keep = hv.as_str().is_some_and(looks_masked);
                    let resolved = if keep {
                        old.and_then(|o| o.get(name)).cloned().ok_or_else(|| {
                            ValidationError::new(format!(
                                "config.headers.{name} looks masked but there is no current value to keep; send the real value"
                            ))
                        })?
                    } else {
                        resent.push(format!("headers.{name}"));
                        hv.clone()
                    };
                    out.insert(name.clone(), resolved);
                }
                merged.insert(key.clone(), Value::Object(out));
            }
            (_, Value::String(s)) if field.secret && looks_masked(s) => {
                if !current.contains_key(key) {
                    return Err(ValidationError::new(format!(
                        "config.{key} looks masked but there is no current value to keep; send the real value"
                    )));
                }
            }
            _ => {
                if field.secret {
                    resent.push(key.clone());
                }
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    let merged = validate(ty, &Value::Object(merged))?;
    let moved: Vec<&str> = schema
        .iter()
        .filter(|f| f.is_credential_target() && current.get(f.name) != merged.get(f.name))
        .map(|f| f.name)
        .collect();
    if !moved.is_empty() {
        let missing = secrets_of(ty, &merged)
            .into_iter()
            .filter(|name| !resent.contains(name))
            .map(|name| format!("config.{name}"))
            .collect::<Vec<_>>();
        if !missing.is_empty() {
            let moved = moved
                .iter()
                .map(|n| format!("config.{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ValidationError::new(format!(
                "{moved} changes where this destination's credentials are sent: send {} again (unmasked) in the same request",
                missing.join(", ")
            )));
        }
    }
    Ok(merged)
}

/// The secret values a config holds: its secret fields and every header (as `headers.<name>`).
fn secrets_of(ty: DestinationType, cfg: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for field in ty.schema() {
        match (&field.kind, cfg.get(field.name)) {
            (FieldKind::Headers, Some(Value::Object(h))) => {
                out.extend(h.keys().map(|name| format!("headers.{name}")));
            }
            (_, Some(v)) if field.secret && !v.is_null() => out.push(field.name.to_string()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_field_of_every_type_has_help_text() {
        for t in DestinationType::ALL {
            assert!(!t.display_name().is_empty());
            for f in t.schema() {
                let help = f.help.trim();
                assert!(!help.is_empty(), "{t}.{} has no help text", f.name);
                assert!(help.ends_with('.'), "{t}.{}: {help:?}", f.name);
            }
        }
    }

    #[test]
    fn every_type_round_trips_its_name() {
        for t in DestinationType::ALL {
            assert_eq!(DestinationType::parse(t.as_str()), Some(t));
            let v = serde_json::to_value(t).unwrap();
            assert_eq!(v, json!(t.as_str()));
        }
    }

    #[test]
    fn defaults_are_filled_and_required_fields_named() {
        let cfg = validate(
            DestinationType::Langfuse,
            &json!({"publicKey": "pk-lf-1234567890", "secretKey": "sk-lf-1234567890"}),
        )
        .unwrap();
        assert_eq!(cfg["baseUrl"], "https://us.cloud.langfuse.com");
        let err = validate(DestinationType::Langfuse, &json!({"publicKey": "pk"})).unwrap_err();
        assert_eq!(err.0, "config.secretKey is required for type langfuse");
        let err = validate(
            DestinationType::Langfuse,
            &json!({"publicKey": "", "secretKey": "x"}),
        )
        .unwrap_err();
        assert_eq!(err.0, "config.publicKey is required for type langfuse");
    }

    #[test]
    fn unknown_keys_enums_patterns_and_urls_are_enforced() {
        let err = validate(
            DestinationType::Webhook,
            &json!({"url": "https://x.test", "verb": "GET"}),
        )
        .unwrap_err();
        assert!(
            err.0.starts_with("config.verb is not a valid field"),
            "{err}"
        );
        let err = validate(
            DestinationType::Webhook,
            &json!({"url": "https://x.test", "method": "GET"}),
        )
        .unwrap_err();
        assert!(
            err.0.starts_with("config.method must be one of POST, PUT"),
            "{err}"
        );
        let err = validate(DestinationType::Webhook, &json!({"url": "ftp://x.test"})).unwrap_err();
        assert!(
            err.0
                .starts_with("config.url must be an absolute http(s) URL"),
            "{err}"
        );
        let err = validate(DestinationType::Webhook, &json!({"url": "/relative"})).unwrap_err();
        assert!(err.0.starts_with("config.url must be"), "{err}");
        let err = validate(
            DestinationType::Sentry,
            &json!({"otlpEndpoint": "https://o1.ingest.sentry.io/api/1/otlp", "dsn": "nope"}),
        )
        .unwrap_err();
        assert!(
            err.0.starts_with("config.dsn must be a Sentry DSN"),
            "{err}"
        );
        assert!(
            !err.0.contains("nope"),
            "secret values are not echoed: {err}"
        );
        validate(
            DestinationType::Sentry,
            &json!({"otlpEndpoint": "https://o1.ingest.sentry.io/api/1/otlp", "dsn": "https://abc@o1.ingest.sentry.io/456"}),
        )
        .unwrap();
        let err = validate(
            DestinationType::Snowflake,
            &json!({"account": "bad account", "token": "t"}),
        )
        .unwrap_err();
        assert!(
            err.0
                .starts_with("config.account must be a Snowflake account"),
            "{err}"
        );
        let err = validate(
            DestinationType::Newrelic,
            &json!({"licenseKey": "k", "region": "ap"}),
        )
        .unwrap_err();
        assert!(
            err.0.starts_with("config.region must be one of us, eu"),
            "{err}"
        );
    }

    #[test]
    fn s3_auth_modes_and_templates() {
        let ok = validate(
            DestinationType::S3,
            &json!({"bucketName": "b", "accessKeyId": "AKIAXXXXXXXXXXXXXXXX", "secretAccessKey": "s"}),
        )
        .unwrap();
        assert_eq!(ok["prefix"], "openrouter-traces");
        assert_eq!(ok["pathTemplate"], "{prefix}/{date}");
        let err = validate(DestinationType::S3, &json!({"bucketName": "b"})).unwrap_err();
        assert!(err.0.starts_with("config.accessKeyId is required"), "{err}");
        let err = validate(
            DestinationType::S3,
            &json!({"bucketName": "b", "authMode": "iam_role"}),
        )
        .unwrap_err();
        assert!(err.0.starts_with("config.roleArn is required"), "{err}");
        let err = validate(
            DestinationType::S3,
            &json!({"bucketName": "b", "accessKeyId": "a", "secretAccessKey": "s", "pathTemplate": "{prefix}/{hour}"}),
        )
        .unwrap_err();
        assert!(err.0.contains("unknown variable {hour}"), "{err}");
    }

    #[test]
    fn headers_are_validated_and_masked() {
        let err = validate(
            DestinationType::OtelCollector,
            &json!({"endpoint": "https://o.test/v1/traces", "headers": {"X-A": 1}}),
        )
        .unwrap_err();
        assert_eq!(err.0, "config.headers.X-A must be a string");
        let cfg = validate(
            DestinationType::OtelCollector,
            &json!({"endpoint": "https://o.test/v1/traces", "headers": {"Authorization": "Bearer xaat-0123456789"}}),
        )
        .unwrap();
        let m = masked(DestinationType::OtelCollector, &cfg);
        assert_eq!(m["headers"]["Authorization"], "Bear...6789");
        assert_eq!(m["endpoint"], "https://o.test/v1/traces");
    }

    #[test]
    fn urls_and_headers_that_could_leak_or_smuggle_are_refused() {
        let hook = |v: Value| validate(DestinationType::Webhook, &v).unwrap_err().0;
        let err = hook(json!({"url": "https://user:hunter2@x.test/h"}));
        assert!(
            err.starts_with("config.url must not contain credentials"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = hook(json!({"url": "https://x.test/h#frag"}));
        assert!(
            err.starts_with("config.url must not contain a fragment"),
            "{err}"
        );
        assert!(
            validate(
                DestinationType::Webhook,
                &json!({"url": "https://x.test/h?a=1"})
            )
            .is_ok()
        );
        let dd = |url: &str| {
            validate(
                DestinationType::Datadog,
                &json!({"apiKey": "k", "mlApp": "a", "url": url}),
            )
        };
        let err = dd("https://api.datadoghq.com/api/x?").unwrap_err().0;
        assert!(
            err.starts_with("config.url must not contain a query"),
            "{err}"
        );
        let err = dd("https://api.datadoghq.com#x").unwrap_err().0;
        assert!(
            err.starts_with("config.url must not contain a fragment"),
            "{err}"
        );
        assert!(dd("https://api.datadoghq.eu").is_ok());
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "Connection",
            "Upgrade",
            "TE",
            "Trailer",
            "Keep-Alive",
            "Proxy-Authorization",
        ] {
            let err = hook(json!({"url": "https://x.test", "headers": {name: "v"}}));
            assert!(
                err.starts_with(&format!("config.headers.{name} cannot be set")),
                "{err}"
            );
        }
        for value in ["a\u{1b}[31m", "a\rb", "a\u{7f}", "a\u{0}"] {
            let err = hook(json!({"url": "https://x.test", "headers": {"X-Key": value}}));
            assert_eq!(
                err,
                "config.headers.X-Key must not contain control characters (line breaks, NUL, ...)"
            );
        }
        assert!(
            validate(
                DestinationType::Webhook,
                &json!({"url": "https://x.test", "headers": {"X-Key": "a\tb é"}})
            )
            .is_ok()
        );
    }

    #[test]
    fn masking_shapes() {
        assert_eq!(mask_secret("pk-lf-abcdefgh1234"), "pk-l...1234");
        assert_eq!(mask_secret("short"), "********");
        assert!(looks_masked("pk-l...1234"));
        assert!(looks_masked("********"));
        assert!(looks_masked("************...AbCd"));
        assert!(!looks_masked("pk-lf-abcdefgh1234"));
    }

    #[test]
    fn merge_keeps_masked_and_unsent_fields() {
        let current = validate(
            DestinationType::Langfuse,
            &json!({"publicKey": "pk-lf-abcdefgh1234", "secretKey": "sk-lf-abcdefgh5678", "headers": {"X-Env": "production-123"}}),
        )
        .unwrap();
        let shown = masked(DestinationType::Langfuse, &current);
        let merged = merge(
            DestinationType::Langfuse,
            &current,
            &json!({"publicKey": shown["publicKey"], "secretKey": "sk-lf-new-secret-9999", "headers": shown["headers"]}),
        )
        .unwrap();
        assert_eq!(merged["publicKey"], "pk-lf-abcdefgh1234");
        assert_eq!(merged["secretKey"], "sk-lf-new-secret-9999");
        assert_eq!(merged["headers"]["X-Env"], "production-123");
        assert_eq!(merged["baseUrl"], "https://us.cloud.langfuse.com");
        let merged = merge(
            DestinationType::Langfuse,
            &current,
            &json!({"headers": shown["headers"]}),
        )
        .unwrap();
        assert_eq!(merged["secretKey"], "sk-lf-abcdefgh5678");
        let err = merge(
            DestinationType::Langfuse,
            &current,
            &json!({"secretKey": null}),
        )
        .unwrap_err();
        assert_eq!(err.0, "config.secretKey is required for type langfuse");
    }

    #[test]
    fn moving_the_credentials_needs_every_secret_again() {
        let current = validate(
            DestinationType::Langfuse,
            &json!({"publicKey": "pk-lf-abcdefgh1234", "secretKey": "sk-lf-abcdefgh5678", "headers": {"X-Env": "production-123"}}),
        )
        .unwrap();
        let shown = masked(DestinationType::Langfuse, &current);
        // Only the URL: the stored keys would follow it.
        let err = merge(
            DestinationType::Langfuse,
            &current,
            &json!({"baseUrl": "https://attacker.example"}),
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            "config.baseUrl changes where this destination's credentials are sent: send config.publicKey, config.secretKey, config.headers.X-Env again (unmasked) in the same request"
        );
        // Masked values sent back do not count as sent.
        let err = merge(
            DestinationType::Langfuse,
            &current,
            &json!({"baseUrl": "https://attacker.example", "publicKey": shown["publicKey"], "secretKey": "sk-lf-new-1234567", "headers": shown["headers"]}),
        )
        .unwrap_err();
        assert!(
            err.0
                .contains("send config.publicKey, config.headers.X-Env again"),
            "{err}"
        );
        // Resetting the URL to its default moves it too.
        let moved = merge(
            DestinationType::Langfuse,
            &current,
            &json!({"baseUrl": "https://eu.cloud.langfuse.com", "publicKey": "pk-lf-new-00001111", "secretKey": "sk-lf-new-22223333", "headers": {"X-Env": "eu-123456789"}}),
        )
        .unwrap();
        let err = merge(DestinationType::Langfuse, &moved, &json!({"baseUrl": null})).unwrap_err();
        assert!(err.0.starts_with("config.baseUrl changes where"), "{err}");
        // Everything sent again: accepted.
        assert_eq!(moved["baseUrl"], "https://eu.cloud.langfuse.com");
        assert_eq!(moved["secretKey"], "sk-lf-new-22223333");
        // Non-URL credential targets: a region, an account.
        let nr = validate(
            DestinationType::Newrelic,
            &json!({"licenseKey": "nr-license-0123456789"}),
        )
        .unwrap();
        let err = merge(DestinationType::Newrelic, &nr, &json!({"region": "eu"})).unwrap_err();
        assert!(
            err.0.starts_with("config.region changes where") && err.0.contains("config.licenseKey"),
            "{err}"
        );
        let sf = validate(
            DestinationType::Snowflake,
            &json!({"account": "xy12345.us-east-1", "token": "pat-0123456789abcdef"}),
        )
        .unwrap();
        let err = merge(
            DestinationType::Snowflake,
            &sf,
            &json!({"account": "evil-acct"}),
        )
        .unwrap_err();
        assert!(err.0.starts_with("config.account changes where"), "{err}");
        // A webhook's headers are its credentials.
        let wh = validate(
            DestinationType::Webhook,
            &json!({"url": "https://hooks.example/a", "headers": {"Authorization": "Bearer 0123456789abc"}}),
        )
        .unwrap();
        let err = merge(
            DestinationType::Webhook,
            &wh,
            &json!({"url": "https://other.example/"}),
        )
        .unwrap_err();
        assert!(
            err.0.contains("send config.headers.Authorization again"),
            "{err}"
        );
        // A change elsewhere (not a target) still keeps masked secrets.
        merge(DestinationType::Snowflake, &sf, &json!({"table": "OTHER"})).unwrap();
    }

    #[test]
    fn every_type_with_credentials_names_where_they_go() {
        for ty in DestinationType::ALL {
            let schema = ty.schema();
            let targets: Vec<&str> = schema
                .iter()
                .filter(|f| f.is_credential_target())
                .map(|f| f.name)
                .collect();
            // Opik (Comet's cloud) and BigQuery (Google's API; the token endpoint is inside the
            // secret key file itself) have fixed addresses: nothing to redirect.
            if !matches!(ty, DestinationType::Opik | DestinationType::Bigquery) {
                assert!(!targets.is_empty(), "{ty} has no credential target field");
            }
        }
    }

    const SA_KEY: &str = r#"{"type": "service_account", "project_id": "my-gcp-project", "private_key_id": "abc123", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", "client_email": "broadcast@my-gcp-project.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token"}"#;

    #[test]
    fn bigquery_schema_defaults_masks_and_checks_the_key_file() {
        let cfg = validate(
            DestinationType::Bigquery,
            &json!({"projectId": "my-gcp-project", "serviceAccountKey": SA_KEY}),
        )
        .unwrap();
        assert_eq!(cfg["dataset"], "openrouter");
        assert_eq!(cfg["table"], "openrouter_traces");
        let shown = masked(DestinationType::Bigquery, &cfg);
        assert!(
            !shown["serviceAccountKey"]
                .as_str()
                .unwrap()
                .contains("PRIVATE")
        );
        assert_eq!(shown["projectId"], "my-gcp-project");
        let key = ServiceAccountKey::parse(SA_KEY).unwrap();
        assert_eq!(key.token_uri, GOOGLE_TOKEN_URI);
        assert!(!format!("{key:?}").contains("MIIE"), "Debug hides the key");

        let err = validate(
            DestinationType::Bigquery,
            &json!({"projectId": "my-gcp-project"}),
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            "config.serviceAccountKey is required for type bigquery"
        );
        let err = validate(
            DestinationType::Bigquery,
            &json!({"projectId": "My Project", "serviceAccountKey": SA_KEY}),
        )
        .unwrap_err();
        assert!(
            err.0
                .starts_with("config.projectId must be a Google Cloud project ID"),
            "{err}"
        );
        let bad_cases = [
            (
                "not json SECRET",
                "config.serviceAccountKey must be the complete contents",
            ),
            (
                r#"["SECRET"]"#,
                "config.serviceAccountKey must be a JSON object",
            ),
            (
                r#"{"private_key": "-----BEGIN SECRET"}"#,
                "config.serviceAccountKey.client_email is required",
            ),
            (
                r#"{"type": "authorized_user", "client_email": "a@b", "private_key": "-----BEGIN SECRET"}"#,
                "config.serviceAccountKey.type must be \"service_account\"",
            ),
            (
                r#"{"client_email": "a@b", "private_key": "SECRET"}"#,
                "config.serviceAccountKey.private_key must be a PEM",
            ),
            (
                r#"{"client_email": "a@b", "private_key": "-----BEGIN SECRET", "token_uri": "file:///x"}"#,
                "config.serviceAccountKey.token_uri must be an absolute http(s) URL",
            ),
        ];
        for (key, want) in bad_cases {
            let err = validate(
                DestinationType::Bigquery,
                &json!({"projectId": "my-gcp-project", "serviceAccountKey": key}),
            )
            .unwrap_err();
            assert!(err.0.starts_with(want), "{key}: {err}");
            assert!(!err.0.contains("SECRET"), "the key is not echoed: {err}");
        }
        let err = validate(
            DestinationType::Bigquery,
            &json!({"projectId": "my-gcp-project", "serviceAccountKey": SA_KEY, "dataset": "a-b"}),
        )
        .unwrap_err();
        assert!(
            err.0
                .starts_with("config.dataset must be a BigQuery dataset ID"),
            "{err}"
        );
    }

    #[test]
    fn raindrop_schema() {
        let cfg = validate(
            DestinationType::Raindrop,
            &json!({"writeKey": "rd-write-key-0123456789"}),
        )
        .unwrap();
        assert_eq!(cfg["baseUrl"], "https://api.raindrop.ai");
        assert_eq!(
            masked(DestinationType::Raindrop, &cfg)["writeKey"],
            "rd-w...6789"
        );
        let err = validate(DestinationType::Raindrop, &json!({})).unwrap_err();
        assert_eq!(err.0, "config.writeKey is required for type raindrop");
        let err = validate(
            DestinationType::Raindrop,
            &json!({"writeKey": "k", "baseUrl": "api.raindrop.ai"}),
        )
        .unwrap_err();
        assert!(
            err.0
                .starts_with("config.baseUrl must be an absolute http(s) URL"),
            "{err}"
        );
    }
}
