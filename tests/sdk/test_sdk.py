"""Integration tests: the official OpenRouter Python SDK (openrouter==1.3.84) against a real
tracecast server, covering the observability-destinations management API for all 17
destination types.

Run:  TRACECAST_BIN=target/debug/tracecast python -m pytest tests/sdk -q
"""

from __future__ import annotations

import copy
import json
import secrets
import time
import uuid
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional

import pytest

from openrouter import OpenRouter, components, errors

from conftest import Api, Traffic, mask, new_secret, register_secret

# The SDK emits pydantic serializer warnings when a test deliberately sends values outside
# its Literal unions (unknown filter fields/operators, bad regions); they are expected.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# --------------------------------------------------------------------------------------
# Per-type specifications (from the API contract)
# --------------------------------------------------------------------------------------

SECRET = object()  # placeholder: generate a fresh clear secret for this field

TYPE_SPECS: Dict[str, Dict[str, Any]] = {
    "arize": {
        "config": {"apiKey": SECRET, "spaceKey": SECRET, "modelId": "model-prod-1"},
        "secrets": ["apiKey", "spaceKey"],
        "defaults": {"baseUrl": "https://otlp.arize.com"},
        "required": ["apiKey", "spaceKey", "modelId"],
        "patch": ("modelId", "model-prod-2"),
        "cls": components.ObservabilityArizeDestination,
    },
    "braintrust": {
        "config": {"apiKey": SECRET, "projectId": "proj-123"},
        "secrets": ["apiKey"],
        "defaults": {"baseUrl": "https://api.braintrust.dev"},
        "required": ["apiKey", "projectId"],
        "patch": ("projectId", "proj-456"),
        "cls": components.ObservabilityBraintrustDestination,
    },
    "clickhouse": {
        "config": {
            "host": "https://ch.example.com:8443",
            "database": "analytics",
            "username": "default",
            "password": SECRET,
        },
        "secrets": ["password"],
        "defaults": {"table": "OPENROUTER_TRACES", "shouldIncludeCacheWriteTokens": False},
        "required": ["host", "database", "username", "password"],
        "patch": ("username", "ingest_user"),
        "cls": components.ObservabilityClickhouseDestination,
    },
    "datadog": {
        "config": {"apiKey": SECRET, "mlApp": "my-llm-app"},
        "secrets": ["apiKey"],
        "defaults": {"url": "https://api.datadoghq.com"},
        "required": ["apiKey", "mlApp"],
        "patch": ("mlApp", "other-llm-app"),
        "cls": components.ObservabilityDatadogDestination,
    },
    "grafana": {
        "config": {"apiKey": SECRET, "instanceId": "123456"},
        "secrets": ["apiKey"],
        "defaults": {"baseUrl": "https://otlp-gateway-prod-us-west-0.grafana.net"},
        "required": ["apiKey", "instanceId"],
        "patch": ("instanceId", "987654"),
        "cls": components.ObservabilityGrafanaDestination,
    },
    "langfuse": {
        "config": {"publicKey": SECRET, "secretKey": SECRET},
        "secrets": ["publicKey", "secretKey"],
        "defaults": {"baseUrl": "https://us.cloud.langfuse.com"},
        "required": ["publicKey", "secretKey"],
        "patch": ("baseUrl", "https://cloud.langfuse.com"),
        "cls": components.ObservabilityLangfuseDestination,
    },
    "langsmith": {
        "config": {"apiKey": SECRET},
        "secrets": ["apiKey"],
        "defaults": {"endpoint": "https://api.smith.langchain.com", "project": "main"},
        "required": ["apiKey"],
        "patch": ("project", "staging-project"),
        "cls": components.ObservabilityLangsmithDestination,
    },
    "newrelic": {
        "config": {"licenseKey": SECRET},
        "secrets": ["licenseKey"],
        "defaults": {"region": "us"},
        "required": ["licenseKey"],
        "patch": ("region", "eu"),
        "cls": components.ObservabilityNewrelicDestination,
    },
    "opik": {
        "config": {"apiKey": SECRET, "workspace": "my-team", "projectName": "prod-traces"},
        "secrets": ["apiKey"],
        "defaults": {},
        "required": ["apiKey", "workspace", "projectName"],
        "patch": ("projectName", "dev-traces"),
        "cls": components.ObservabilityOpikDestination,
    },
    "otel-collector": {
        "config": {"endpoint": "https://otel.example.com/v1/traces"},
        "secrets": [],
        "defaults": {},
        "required": ["endpoint"],
        "patch": ("endpoint", "https://otel2.example.com/v1/traces"),
        "cls": components.ObservabilityOtelCollectorDestination,
    },
    "posthog": {
        "config": {"apiKey": SECRET},
        "secrets": ["apiKey"],
        "defaults": {"endpoint": "https://us.i.posthog.com"},
        "required": ["apiKey"],
        "patch": ("endpoint", "https://eu.i.posthog.com"),
        "cls": components.ObservabilityPosthogDestination,
    },
    "ramp": {
        "config": {"apiKey": SECRET},
        "secrets": ["apiKey"],
        "defaults": {"baseUrl": "https://api.ramp.com/developer/v1/ai-usage/openrouter"},
        "required": ["apiKey"],
        "patch": ("baseUrl", "https://demo-api.ramp.com/developer/v1/ai-usage/openrouter"),
        "cls": components.ObservabilityRampDestination,
    },
    "s3": {
        "config": {
            "bucketName": "my-trace-bucket",
            "accessKeyId": SECRET,
            "secretAccessKey": SECRET,
            "sessionToken": SECRET,
        },
        "secrets": ["accessKeyId", "secretAccessKey", "sessionToken"],
        "defaults": {
            "prefix": "openrouter-traces",
            "pathTemplate": "{prefix}/{date}",
            "authMode": "access_keys",
        },
        "required": ["bucketName", "accessKeyId", "secretAccessKey"],
        "patch": ("prefix", "traces-v2"),
        "cls": components.ObservabilityS3Destination,
    },
    "sentry": {
        "config": {"otlpEndpoint": "https://o1.ingest.sentry.io/api/456/otlp", "dsn": SECRET},
        "secrets": ["dsn"],
        "defaults": {},
        "required": ["otlpEndpoint", "dsn"],
        "patch": ("otlpEndpoint", "https://o2.ingest.sentry.io/api/456/otlp"),
        "cls": components.ObservabilitySentryDestination,
    },
    "snowflake": {
        "config": {"account": "xy12345.us-east-1", "token": SECRET},
        "secrets": ["token"],
        "defaults": {
            "database": "SNOWFLAKE_LEARNING_DB",
            "schema": "PUBLIC",
            "table": "OPENROUTER_TRACES",
            "warehouse": "COMPUTE_WH",
            # the SDK model declares this default as well (same as clickhouse)
        },
        "required": ["account", "token"],
        "patch": ("warehouse", "BIG_WH"),
        "cls": components.ObservabilitySnowflakeDestination,
    },
    "weave": {
        "config": {"apiKey": SECRET, "entity": "my-entity", "project": "my-project"},
        "secrets": ["apiKey"],
        "defaults": {"baseUrl": "https://trace.wandb.ai"},
        "required": ["apiKey", "entity", "project"],
        "patch": ("project", "other-project"),
        "cls": components.ObservabilityWeaveDestination,
    },
    "webhook": {
        "config": {"url": "https://hooks.example.com/openrouter"},
        "secrets": [],
        "defaults": {"method": "POST"},
        "required": ["url"],
        "patch": ("method", "PUT"),
        "cls": components.ObservabilityWebhookDestination,
    },
}

ALL_TYPES = sorted(TYPE_SPECS)
assert len(ALL_TYPES) == 17

ALL_FIELDS = {
    "id",
    "workspace_id",
    "name",
    "enabled",
    "privacy_mode",
    "broadcast_generation_cost",
    "broadcast_generation_identity",
    "broadcast_generation_request_context",
    "broadcast_generation_cost_allocation",
    "sampling_rate",
    "api_key_hashes",
    "filter_rules",
    "regions",
    "created_at",
    "updated_at",
    "type",
    "config",
}

MGMT_ONLY = "Only management keys can perform this operation"
# Config fields that decide where the credentials go (tracecast: every URL field, plus
# newrelic/s3 region, s3 provider and snowflake account). A PATCH changing one must send every
# secret again.
CREDENTIAL_TARGETS = {"baseUrl", "url", "endpoint", "otlpEndpoint", "host", "region", "provider", "account"}
HEADER = "X-Trace-Token"


def secret_for(dtype: str, field: str) -> str:
    if dtype == "sentry" and field == "dsn":
        project = str(secrets.randbelow(9000) + 1000)
        return register_secret(
            f"https://{secrets.token_hex(12)}@o{secrets.randbelow(900) + 100}.ingest.sentry.io/{project}"
        )
    return new_secret(f"{dtype}-{field}")


def make_config(dtype: str, with_headers: bool = True) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {}
    for k, v in TYPE_SPECS[dtype]["config"].items():
        cfg[k] = secret_for(dtype, k) if v is SECRET else v
    if with_headers:
        cfg["headers"] = {HEADER: new_secret("hdr")}
    return cfg


def expected_config(dtype: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """What the server must return for ``cfg``: defaults filled, secrets and headers masked."""
    spec = TYPE_SPECS[dtype]
    out: Dict[str, Any] = dict(spec["defaults"])
    for k, v in cfg.items():
        if k == "headers":
            out[k] = {hk: mask(hv) for hk, hv in v.items()}
        elif k in spec["secrets"]:
            out[k] = mask(v)
        else:
            out[k] = v
    return out


def expected_sql_defaults(dtype: str) -> Dict[str, Any]:
    if dtype in ("clickhouse", "snowflake"):
        return {"shouldIncludeCacheWriteTokens": False}
    return {}


def full_expected_config(dtype: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
    out = expected_sql_defaults(dtype)
    out.update(expected_config(dtype, cfg))
    return out


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def api_error(
    fn: Callable[[], Any],
    status: int,
    exc_type: type = errors.OpenRouterError,
    *,
    contains: tuple = (),
    equals: Optional[str] = None,
    startswith: Optional[str] = None,
) -> str:
    """Runs ``fn`` expecting the SDK to raise for HTTP ``status`` with an
    ``{"error": {"code": status, "message": ...}}`` body. Returns the message."""
    with pytest.raises(errors.OpenRouterError) as ei:
        fn()
    e = ei.value
    assert e.status_code == status, f"expected HTTP {status}, got {e.status_code}: {e.body}"
    assert isinstance(e, exc_type), f"expected {exc_type.__name__}, got {type(e).__name__}: {e.body}"
    body = json.loads(e.body)
    assert isinstance(body, dict) and set(body) == {"error"}, f"bad error body: {e.body}"
    err = body["error"]
    assert err.get("code") == status, f"error.code != {status}: {e.body}"
    msg = err.get("message")
    assert isinstance(msg, str) and msg, f"error.message missing: {e.body}"
    if equals is not None:
        assert msg == equals
    if startswith is not None:
        assert msg.startswith(startswith), msg
    for c in contains:
        assert c in msg, f"{c!r} not in error message {msg!r}"
    return msg


def raw_error(resp, status: int) -> str:
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text}"
    body = resp.json()
    assert set(body) == {"error"}, resp.text
    assert body["error"]["code"] == status, resp.text
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


def parse_ts(s: str) -> datetime:
    assert isinstance(s, str) and s.endswith("Z"), s
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def check_shape(d: Dict[str, Any]) -> None:
    missing = ALL_FIELDS - set(d)
    assert not missing, f"destination lacks fields {sorted(missing)}: {sorted(d)}"
    uuid.UUID(d["id"])
    uuid.UUID(d["workspace_id"])
    parse_ts(d["created_at"])
    parse_ts(d["updated_at"])
    assert isinstance(d["regions"], list) and d["regions"]


def list_all(client: OpenRouter, workspace_id: Optional[str] = None) -> List[Dict[str, Any]]:
    """All destinations (raw JSON dicts) via the SDK, following pages of 100."""
    out: List[Dict[str, Any]] = []
    offset = 0
    while True:
        kwargs: Dict[str, Any] = {"offset": offset, "limit": 100}
        if workspace_id:
            kwargs["workspace_id"] = workspace_id
        page = client.observability.list(**kwargs)
        assert page is not None
        data = page.result.data
        out.extend(d.model_dump(by_alias=True) for d in data)
        if len(data) < 100:
            return out
        offset += len(data)


def list_ids(client: OpenRouter, workspace_id: Optional[str] = None) -> List[str]:
    return [d["id"] for d in list_all(client, workspace_id)]


def create_raw(client: OpenRouter, traffic: Traffic, **kwargs) -> Dict[str, Any]:
    res = client.observability.create(**kwargs)
    ex = traffic.last()
    assert ex.status == 201, f"create -> {ex.status}"
    body = ex.json()
    assert body["data"]["id"] == res.data.id
    return body["data"]


def webhook_cfg() -> Dict[str, Any]:
    return {"url": "https://hooks.example.com/" + secrets.token_hex(4)}


# --------------------------------------------------------------------------------------
# CRUD for every type
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_TYPES)
def test_crud_every_type(dtype, client, traffic, default_workspace_id, cleanup):
    spec = TYPE_SPECS[dtype]
    cfg = make_config(dtype)
    exp_cfg = full_expected_config(dtype, cfg)

    # ---- create (default workspace) ----
    res = client.observability.create(name=f"{dtype} primary", type_=dtype, config=cfg)
    cleanup.append(res.data.id)
    ex = traffic.last()
    assert ex.status == 201
    created = ex.json()["data"]
    assert isinstance(res.data, spec["cls"]), type(res.data)
    check_shape(created)
    assert created["type"] == dtype
    assert created["name"] == f"{dtype} primary"
    assert created["workspace_id"] == default_workspace_id
    assert created["enabled"] is True
    assert created["privacy_mode"] is False
    assert created["broadcast_generation_cost"] is False
    assert created["broadcast_generation_identity"] is False
    assert created["broadcast_generation_request_context"] is False
    assert created["broadcast_generation_cost_allocation"] is False
    assert created["sampling_rate"] == 1
    assert created["api_key_hashes"] is None
    assert created["filter_rules"] is None
    assert created["regions"] == ["global"]
    # defaults filled in *by the server* (checked on the raw JSON, since the SDK model would
    # otherwise paper over missing defaults), secrets + every header value masked
    assert created["config"] == exp_cfg
    for f in spec["secrets"]:
        assert created["config"][f] == mask(cfg[f])
    assert created["config"]["headers"] == {HEADER: mask(cfg["headers"][HEADER])}
    # the SDK's typed view agrees
    sdk_cfg = res.data.config.model_dump(by_alias=True)
    for k, v in exp_cfg.items():
        assert sdk_cfg[k] == v, (k, sdk_cfg[k], v)

    # ---- get ----
    got = client.observability.get(id=created["id"])
    assert isinstance(got.data, spec["cls"])
    assert traffic.last_json()["data"] == created

    # ---- list ----
    page = client.observability.list(limit=100)
    listed = [d for d in traffic.last_json()["data"] if d["id"] == created["id"]]
    assert listed == [created]
    assert any(d.id == created["id"] and isinstance(d, spec["cls"]) for d in page.result.data)

    # ---- update: only sent fields change; masked secrets/headers sent back are kept ----
    time.sleep(0.02)
    patch_field, patch_value = spec["patch"]
    patch_cfg: Dict[str, Any] = {patch_field: patch_value, "headers": created["config"]["headers"]}
    for f in spec["secrets"]:
        patch_cfg[f] = created["config"][f]  # masked value
    if patch_field in CREDENTIAL_TARGETS:
        # Moving the credentials (a URL, host, region...) needs them again, unmasked: the
        # masked echo is refused, naming the moved field.
        api_error(lambda: client.observability.update(id=created["id"], config=patch_cfg), 400,
                  errors.BadRequestResponseError,
                  startswith=f"config.{patch_field} changes where this destination's credentials are sent")
        patch_cfg["headers"] = cfg["headers"]
        for f in spec["secrets"]:
            patch_cfg[f] = cfg[f]
    upd = client.observability.update(
        id=created["id"], name=f"{dtype} renamed", enabled=False, config=patch_cfg
    )
    sent = traffic.last().request_json()
    assert set(sent) == {"name", "enabled", "config"}, sent
    assert traffic.last().status == 200
    updated = traffic.last_json()["data"]
    assert isinstance(upd.data, spec["cls"])
    expected = copy.deepcopy(created)
    expected["name"] = f"{dtype} renamed"
    expected["enabled"] = False
    expected["config"][patch_field] = patch_value
    expected["updated_at"] = updated["updated_at"]
    assert updated == expected
    assert updated["created_at"] == created["created_at"]
    assert parse_ts(updated["updated_at"]) > parse_ts(created["updated_at"])

    client.observability.get(id=created["id"])
    assert traffic.last_json()["data"] == updated

    # ---- update: a new clear secret (and header value) changes the mask ----
    time.sleep(0.02)
    rotate_cfg: Dict[str, Any] = {"headers": {HEADER: new_secret("hdr2")}}
    new_secret_value = None
    if spec["secrets"]:
        first = spec["secrets"][0]
        new_secret_value = secret_for(dtype, first)
        rotate_cfg[first] = new_secret_value
    client.observability.update(id=created["id"], config=rotate_cfg)
    rotated = traffic.last_json()["data"]
    expected2 = copy.deepcopy(updated)
    expected2["config"]["headers"] = {HEADER: mask(rotate_cfg["headers"][HEADER])}
    if new_secret_value is not None:
        expected2["config"][first] = mask(new_secret_value)
        assert mask(new_secret_value) != updated["config"][first]
    expected2["updated_at"] = rotated["updated_at"]
    assert rotated == expected2
    assert parse_ts(rotated["updated_at"]) > parse_ts(updated["updated_at"])
    client.observability.get(id=created["id"])
    assert traffic.last_json()["data"] == rotated

    # ---- delete ----
    d = client.observability.delete(id=created["id"])
    assert d.DELETED is True
    assert traffic.last().status == 200
    assert traffic.last_json() == {"deleted": True}

    api_error(lambda: client.observability.get(id=created["id"]), 404, errors.NotFoundResponseError)
    api_error(
        lambda: client.observability.update(id=created["id"], name="zombie"),
        404,
        errors.NotFoundResponseError,
    )
    api_error(lambda: client.observability.delete(id=created["id"]), 404, errors.NotFoundResponseError)
    assert created["id"] not in list_ids(client)


@pytest.mark.parametrize("dtype", ALL_TYPES)
def test_create_in_workspace_and_list_every_type(dtype, client, traffic, workspace):
    """Each type also works when scoped to a non-default workspace via workspace_id."""
    cfg = make_config(dtype, with_headers=False)
    created = create_raw(
        client, traffic, name=f"{dtype} ws", type_=dtype, config=cfg, workspace_id=workspace
    )
    assert created["workspace_id"] == workspace
    assert created["config"] == full_expected_config(dtype, cfg)
    page = client.observability.list(workspace_id=workspace)
    body = traffic.last_json()
    assert body["total_count"] == 1
    assert body["data"] == [created]
    assert isinstance(page.result.data[0], TYPE_SPECS[dtype]["cls"])
    # not visible in the default workspace
    assert created["id"] not in list_ids(client)
    client.observability.delete(id=created["id"])
    client.observability.list(workspace_id=workspace)
    assert traffic.last_json() == {"data": [], "total_count": 0}


# --------------------------------------------------------------------------------------
# Config validation
# --------------------------------------------------------------------------------------


def test_missing_required_langfuse_public_key_message(client):
    cfg = make_config("langfuse")
    del cfg["publicKey"]
    api_error(
        lambda: client.observability.create(name="x", type_="langfuse", config=cfg),
        400,
        errors.BadRequestResponseError,
        equals="config.publicKey is required for type langfuse",
    )


@pytest.mark.parametrize(
    "dtype,field",
    [(t, f) for t in ALL_TYPES for f in TYPE_SPECS[t]["required"]],
)
def test_missing_required_field(dtype, field, client):
    cfg = make_config(dtype)
    del cfg[field]
    api_error(
        lambda: client.observability.create(name="x", type_=dtype, config=cfg),
        400,
        errors.BadRequestResponseError,
        startswith=f"config.{field} is required for type {dtype}",
    )


@pytest.mark.parametrize("dtype", ALL_TYPES)
def test_unknown_config_key(dtype, client):
    cfg = make_config(dtype)
    cfg["notARealField"] = "x"
    api_error(
        lambda: client.observability.create(name="x", type_=dtype, config=cfg),
        400,
        errors.BadRequestResponseError,
        startswith="config.notARealField is not a valid field",
    )


INVALID_VALUES = [
    ("newrelic", {"region": "ap"}, "config.region"),
    ("webhook", {"method": "GET"}, "config.method"),
    ("s3", {"authMode": "x"}, "config.authMode"),
    ("webhook", {"url": "not a url"}, "config.url"),
    ("otel-collector", {"endpoint": "not a url"}, "config.endpoint"),
    ("clickhouse", {"host": "not a url"}, "config.host"),
    ("sentry", {"otlpEndpoint": "not a url"}, "config.otlpEndpoint"),
    ("sentry", {"dsn": "SECRET:not-a-sentry-dsn"}, "config.dsn"),
    ("sentry", {"dsn": "SECRET:https://o1.ingest.sentry.io/456"}, "config.dsn"),
    ("sentry", {"dsn": "SECRET:http://abc123@o1.ingest.sentry.io/456"}, "config.dsn"),
    ("sentry", {"dsn": "SECRET:https://abc123@o1.ingest.sentry.io/notdigits"}, "config.dsn"),
    ("grafana", {"instanceId": "abc"}, "config.instanceId"),
    ("snowflake", {"account": "bad account!"}, "config.account"),
    ("clickhouse", {"database": "my-db"}, "config.database"),
    ("clickhouse", {"table": "traces; drop table x"}, "config.table"),
    ("snowflake", {"database": "1db"}, "config.database"),
    ("snowflake", {"schema": "my schema"}, "config.schema"),
    ("snowflake", {"table": "a.b"}, "config.table"),
    ("snowflake", {"warehouse": "wh-1"}, "config.warehouse"),
]


@pytest.mark.parametrize(
    "dtype,override,field", INVALID_VALUES, ids=[f"{t}-{f}-{i}" for i, (t, _, f) in enumerate(INVALID_VALUES)]
)
def test_invalid_config_value(dtype, override, field, client):
    cfg = make_config(dtype)
    for k, v in override.items():
        if isinstance(v, str) and v.startswith("SECRET:"):
            # a (malformed) secret value: it must not be echoed in the error message
            v = register_secret(v[len("SECRET:"):])
        cfg[k] = v
    api_error(
        lambda: client.observability.create(name="x", type_=dtype, config=cfg),
        400,
        errors.BadRequestResponseError,
        contains=(field,),
    )


def test_valid_sentry_dsn_example_and_enum_values(client, traffic, workspace):
    """The documented sentry DSN example and the alternative enum values are accepted."""
    cfg = {"otlpEndpoint": "https://o1.ingest.sentry.io/api/456/otlp",
           "dsn": register_secret("https://abc123@o1.ingest.sentry.io/456")}
    d = create_raw(client, traffic, name="s", type_="sentry", config=cfg, workspace_id=workspace)
    assert d["config"]["dsn"] == mask(cfg["dsn"])
    d = create_raw(client, traffic, name="nr", type_="newrelic",
                   config={"licenseKey": new_secret("nr"), "region": "eu"}, workspace_id=workspace)
    assert d["config"]["region"] == "eu"
    d = create_raw(client, traffic, name="wh", type_="webhook",
                   config={"url": "https://x.example.com/h", "method": "PUT"}, workspace_id=workspace)
    assert d["config"]["method"] == "PUT"


def test_update_validation_leaves_destination_unchanged(client, traffic, workspace):
    cfg = make_config("webhook")
    created = create_raw(client, traffic, name="wh", type_="webhook", config=cfg, workspace_id=workspace)
    i = created["id"]
    api_error(lambda: client.observability.update(id=i, config={"method": "GET"}), 400,
              errors.BadRequestResponseError, contains=("config.method",))
    api_error(lambda: client.observability.update(id=i, config={"url": "not a url"}), 400,
              errors.BadRequestResponseError, contains=("config.url",))
    api_error(lambda: client.observability.update(id=i, config={"bogusKey": "1"}), 400,
              errors.BadRequestResponseError, startswith="config.bogusKey is not a valid field")
    api_error(lambda: client.observability.update(id=i, sampling_rate=0), 400,
              errors.BadRequestResponseError, contains=("sampling_rate",))
    api_error(lambda: client.observability.update(id=i, sampling_rate=1.5), 400,
              errors.BadRequestResponseError, contains=("sampling_rate",))
    api_error(lambda: client.observability.update(id=i, regions=[]), 400,
              errors.BadRequestResponseError, contains=("regions",))
    api_error(lambda: client.observability.update(id=i, regions=["mars"]), 400,
              errors.BadRequestResponseError, contains=("regions",))
    api_error(lambda: client.observability.update(id=i, api_key_hashes=[]), 400,
              errors.BadRequestResponseError, contains=("api_key_hashes",))
    client.observability.get(id=i)
    assert traffic.last_json()["data"] == created


def test_update_required_secret_cannot_be_nulled(client, traffic, workspace):
    cfg = make_config("langfuse")
    created = create_raw(client, traffic, name="lf", type_="langfuse", config=cfg, workspace_id=workspace)
    api_error(
        lambda: client.observability.update(id=created["id"], config={"secretKey": None}),
        400,
        errors.BadRequestResponseError,
        contains=("config.secretKey",),
    )
    client.observability.get(id=created["id"])
    assert traffic.last_json()["data"] == created


def test_mask_boundaries_and_short_secrets(client, traffic, workspace):
    """>= 12 chars: first 4 + "..." + last 4; shorter: "********" (secrets and header values)."""
    tok = secrets.token_hex(8)
    eleven = register_secret("p" + tok[:10])  # 11 chars
    twelve = register_secret("s" + tok[:11])  # 12 chars
    short_hdr = register_secret("h" + tok[:7])  # 8 chars
    cfg = {"publicKey": eleven, "secretKey": twelve, "headers": {"X-Short": short_hdr, "X-Long": twelve + "x"}}
    d = create_raw(client, traffic, name="masks", type_="langfuse", config=cfg, workspace_id=workspace)
    assert d["config"]["publicKey"] == "********"
    assert d["config"]["secretKey"] == twelve[:4] + "..." + twelve[-4:]
    assert d["config"]["headers"] == {"X-Short": "********", "X-Long": twelve[:4] + "..." + (twelve + "x")[-4:]}
    # sending the fully-starred mask back keeps the stored values too
    time.sleep(0.02)
    client.observability.update(id=d["id"], config={"publicKey": "********", "headers": d["config"]["headers"]})
    u = traffic.last_json()["data"]
    assert u["config"] == d["config"]
    # replacing the short secret with a long one reveals the new mask
    longer = new_secret("pk-lf")
    client.observability.update(id=d["id"], config={"publicKey": longer})
    assert traffic.last_json()["data"]["config"]["publicKey"] == mask(longer)
    assert traffic.last_json()["data"]["config"]["secretKey"] == d["config"]["secretKey"]


# --------------------------------------------------------------------------------------
# Top-level fields: sampling_rate, regions, booleans
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0, 1.5, -0.5, 0.00001])
def test_sampling_rate_out_of_range(rate, client):
    api_error(
        lambda: client.observability.create(
            name="x", type_="webhook", config=webhook_cfg(), sampling_rate=rate
        ),
        400,
        errors.BadRequestResponseError,
        contains=("sampling_rate",),
    )


def test_sampling_rate_bounds_and_update(client, traffic, workspace):
    a = create_raw(client, traffic, name="lo", type_="webhook", config=webhook_cfg(),
                   sampling_rate=0.0001, workspace_id=workspace)
    assert a["sampling_rate"] == pytest.approx(0.0001)
    b = create_raw(client, traffic, name="hi", type_="webhook", config=webhook_cfg(),
                   sampling_rate=1, workspace_id=workspace)
    assert b["sampling_rate"] == 1
    res = client.observability.update(id=b["id"], sampling_rate=0.25)
    assert res.data.sampling_rate == pytest.approx(0.25)
    assert traffic.last_json()["data"]["sampling_rate"] == pytest.approx(0.25)
    client.observability.update(id=b["id"], name="hi2")
    assert traffic.last_json()["data"]["sampling_rate"] == pytest.approx(0.25)


def test_regions(client, traffic, workspace):
    d = create_raw(client, traffic, name="r", type_="webhook", config=webhook_cfg(),
                   regions=["eu", "us"], workspace_id=workspace)
    assert d["regions"] == ["europe", "us"]
    res = client.observability.get(id=d["id"])
    assert list(res.data.regions) == ["europe", "us"]
    client.observability.update(id=d["id"], name="r2")  # omitted: kept
    assert traffic.last_json()["data"]["regions"] == ["europe", "us"]
    client.observability.update(id=d["id"], regions=["global"])
    assert traffic.last_json()["data"]["regions"] == ["global"]
    client.observability.update(id=d["id"], regions=["europe"])
    assert traffic.last_json()["data"]["regions"] == ["europe"]
    d2 = create_raw(client, traffic, name="r3", type_="webhook", config=webhook_cfg(),
                    regions=["us"], workspace_id=workspace)
    assert d2["regions"] == ["us"]


@pytest.mark.parametrize("regions", [[], ["mars"], ["global", "mars"]])
def test_regions_invalid(regions, client):
    api_error(
        lambda: client.observability.create(
            name="x", type_="webhook", config=webhook_cfg(), regions=regions
        ),
        400,
        errors.BadRequestResponseError,
        contains=("regions",),
    )


def test_boolean_flags_round_trip_and_partial_update(client, traffic, workspace):
    d = create_raw(
        client, traffic, name="flags", type_="webhook", config=webhook_cfg(), workspace_id=workspace,
        enabled=False, privacy_mode=True, broadcast_generation_cost=True,
        broadcast_generation_identity=True, broadcast_generation_request_context=True,
        broadcast_generation_cost_allocation=True,
    )
    assert d["enabled"] is False
    assert d["privacy_mode"] is True
    for f in ("broadcast_generation_cost", "broadcast_generation_identity",
              "broadcast_generation_request_context", "broadcast_generation_cost_allocation"):
        assert d[f] is True, f
    time.sleep(0.02)
    res = client.observability.update(id=d["id"], privacy_mode=False, broadcast_generation_identity=False)
    assert traffic.last().request_json() == {"privacy_mode": False, "broadcast_generation_identity": False}
    u = traffic.last_json()["data"]
    assert res.data.privacy_mode is False
    exp = dict(d, privacy_mode=False, broadcast_generation_identity=False, updated_at=u["updated_at"])
    assert u == exp
    assert parse_ts(u["updated_at"]) > parse_ts(d["updated_at"])


# --------------------------------------------------------------------------------------
# api_key_hashes
# --------------------------------------------------------------------------------------


def test_api_key_hashes(client, api, traffic, default_workspace_id, cleanup):
    k1 = api.create_key(name="app-1")
    k2 = api.create_key(name="app-2")
    h1, h2 = k1["data"]["hash"], k2["data"]["hash"]
    assert k1["data"]["workspace_id"] == default_workspace_id

    api_error(lambda: client.observability.create(name="x", type_="webhook", config=webhook_cfg(),
                                                  api_key_hashes=[]),
              400, errors.BadRequestResponseError, contains=("api_key_hashes",))
    api_error(lambda: client.observability.create(name="x", type_="webhook", config=webhook_cfg(),
                                                  api_key_hashes=["0" * 64]),
              400, errors.BadRequestResponseError, contains=("api_key_hashes",))
    api_error(lambda: client.observability.create(name="x", type_="webhook", config=webhook_cfg(),
                                                  api_key_hashes=["not-a-hash"]),
              400, errors.BadRequestResponseError, contains=("api_key_hashes",))
    api_error(lambda: client.observability.create(name="x", type_="webhook", config=webhook_cfg(),
                                                  api_key_hashes=[h1, "0" * 64]),
              400, errors.BadRequestResponseError, contains=("api_key_hashes",))

    res = client.observability.create(name="allow", type_="webhook", config=webhook_cfg(),
                                      api_key_hashes=[h1])
    cleanup.append(res.data.id)
    assert traffic.last().status == 201
    assert res.data.api_key_hashes == [h1]
    d = traffic.last_json()["data"]
    assert d["api_key_hashes"] == [h1]
    i = d["id"]

    client.observability.get(id=i)
    assert traffic.last_json()["data"]["api_key_hashes"] == [h1]

    # omitted -> kept
    client.observability.update(id=i, name="allow-2")
    assert "api_key_hashes" not in traffic.last().request_json()
    assert traffic.last_json()["data"]["api_key_hashes"] == [h1]

    # list -> replaces
    res = client.observability.update(id=i, api_key_hashes=[h2, h1])
    assert sorted(res.data.api_key_hashes) == sorted([h2, h1])
    assert sorted(traffic.last_json()["data"]["api_key_hashes"]) == sorted([h1, h2])
    res = client.observability.update(id=i, api_key_hashes=[h2])
    assert traffic.last_json()["data"]["api_key_hashes"] == [h2]

    # invalid replacements rejected, value kept
    api_error(lambda: client.observability.update(id=i, api_key_hashes=[]), 400,
              errors.BadRequestResponseError, contains=("api_key_hashes",))
    api_error(lambda: client.observability.update(id=i, api_key_hashes=["0" * 64]), 400,
              errors.BadRequestResponseError, contains=("api_key_hashes",))
    client.observability.get(id=i)
    assert traffic.last_json()["data"]["api_key_hashes"] == [h2]

    # explicit null -> cleared (the SDK sends JSON null for api_key_hashes=None)
    res = client.observability.update(id=i, api_key_hashes=None)
    assert traffic.last().request_json() == {"api_key_hashes": None}
    assert res.data.api_key_hashes is None
    assert traffic.last_json()["data"]["api_key_hashes"] is None
    client.observability.get(id=i)
    assert traffic.last_json()["data"]["api_key_hashes"] is None


def test_api_key_hashes_of_other_tenant_rejected(client, api, other_tenant_key):
    kb = api.create_key(key=other_tenant_key, name="b-app")
    api_error(lambda: client.observability.create(name="x", type_="webhook", config=webhook_cfg(),
                                                  api_key_hashes=[kb["data"]["hash"]]),
              400, errors.BadRequestResponseError, contains=("api_key_hashes",))


# --------------------------------------------------------------------------------------
# filter_rules
# --------------------------------------------------------------------------------------

VALID_RULES = {
    "enabled": True,
    "groups": [
        {
            "logic": "or",
            "rules": [
                {"field": "model", "operator": "equals", "value": "openai/gpt-4o"},
                {"field": "model", "operator": "regex", "value": "^anthropic/.*"},
                {"field": "provider", "operator": "starts_with", "value": "Open"},
            ],
        },
        {
            "logic": "and",
            "rules": [
                {"field": "total_cost", "operator": "gt", "value": 0.5},
                {"field": "total_tokens", "operator": "lte", "value": 1000.0},
                {"field": "user_id", "operator": "exists"},
                {"field": "session_id", "operator": "not_exists"},
                {"field": "api_key_name", "operator": "not_contains", "value": "test"},
            ],
        },
    ],
}

OTHER_RULES = {
    "enabled": False,
    "groups": [{"logic": "and", "rules": [{"field": "finish_reason", "operator": "equals", "value": "stop"}]}],
}


def test_filter_rules_round_trip_and_tri_state(client, traffic, workspace):
    res = client.observability.create(name="fr", type_="webhook", config=webhook_cfg(),
                                      filter_rules=VALID_RULES, workspace_id=workspace)
    assert traffic.last().status == 201
    d = traffic.last_json()["data"]
    assert d["filter_rules"] == VALID_RULES
    assert res.data.filter_rules is not None
    assert res.data.filter_rules.model_dump(by_alias=True) == VALID_RULES
    i = d["id"]

    client.observability.get(id=i)
    assert traffic.last_json()["data"]["filter_rules"] == VALID_RULES

    client.observability.update(id=i, name="fr-2")  # omitted -> kept
    assert "filter_rules" not in traffic.last().request_json()
    assert traffic.last_json()["data"]["filter_rules"] == VALID_RULES

    res = client.observability.update(id=i, filter_rules=OTHER_RULES)  # value -> replaces
    assert traffic.last_json()["data"]["filter_rules"] == OTHER_RULES
    assert res.data.filter_rules.model_dump(by_alias=True) == OTHER_RULES

    res = client.observability.update(id=i, filter_rules=None)  # null -> clears
    assert traffic.last().request_json() == {"filter_rules": None}
    assert traffic.last_json()["data"]["filter_rules"] is None
    assert res.data.filter_rules is None
    client.observability.get(id=i)
    assert traffic.last_json()["data"]["filter_rules"] is None


def test_filter_rules_server_defaults_raw(api, workspace, client, traffic):
    """Without the SDK (which fills them client-side), the server defaults
    filter_rules.enabled to true and group logic to "and"."""
    r = api.request("POST", "/observability/destinations", json_body={
        "name": "raw", "type": "webhook", "config": webhook_cfg(), "workspace_id": workspace,
        "filter_rules": {"groups": [{"rules": [{"field": "model", "operator": "contains", "value": "gpt"}]}]},
    })
    assert r.status_code == 201, r.text
    fr = r.json()["data"]["filter_rules"]
    assert fr == {"enabled": True, "groups": [{"logic": "and", "rules": [
        {"field": "model", "operator": "contains", "value": "gpt"}]}]}


BAD_RULES = {
    "unknown-field": {"field": "bogus_field", "operator": "equals", "value": "x"},
    "unknown-operator": {"field": "model", "operator": "like", "value": "x"},
    "invalid-regex": {"field": "model", "operator": "regex", "value": "("},
    "gt-string": {"field": "total_cost", "operator": "gt", "value": "cheap"},
    "exists-with-value": {"field": "user_id", "operator": "exists", "value": "x"},
}


# openrouter==1.3.84 silently drops the whole `filter_rules` object from the request body
# when a rule's field/operator is outside its Literal enums, so those cases go over raw HTTP.
SDK_CANNOT_SEND = {"unknown-field", "unknown-operator"}


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_filter_rules_invalid(case, client, api, traffic, workspace):
    rules = {"enabled": True, "groups": [{"logic": "and", "rules": [BAD_RULES[case]]}]}
    d = create_raw(client, traffic, name="ok", type_="webhook", config=webhook_cfg(), workspace_id=workspace)
    if case in SDK_CANNOT_SEND:
        msg = raw_error(api.request("POST", "/observability/destinations", json_body={
            "name": "x", "type": "webhook", "config": webhook_cfg(), "workspace_id": workspace,
            "filter_rules": rules}), 400)
        assert "filter_rules" in msg, msg
        msg = raw_error(api.request("PATCH", f"/observability/destinations/{d['id']}",
                                    json_body={"filter_rules": rules}), 400)
        assert "filter_rules" in msg, msg
    else:
        api_error(
            lambda: client.observability.create(name="x", type_="webhook", config=webhook_cfg(),
                                                filter_rules=rules, workspace_id=workspace),
            400,
            errors.BadRequestResponseError,
            contains=("filter_rules",),
        )
        assert traffic.last().request_json()["filter_rules"] == rules
        api_error(
            lambda: client.observability.update(id=d["id"], filter_rules=rules),
            400,
            errors.BadRequestResponseError,
            contains=("filter_rules",),
        )
        assert traffic.last().request_json() == {"filter_rules": rules}
    client.observability.get(id=d["id"])
    assert traffic.last_json()["data"]["filter_rules"] is None
    client.observability.list(workspace_id=workspace)
    assert traffic.last_json()["total_count"] == 1


# --------------------------------------------------------------------------------------
# list / pagination
# --------------------------------------------------------------------------------------


def test_list_pagination(client, traffic, workspace):
    types = ["webhook", "langfuse", "posthog", "webhook", "s3", "otel-collector"]
    ids = []
    for n, t in enumerate(types):
        d = create_raw(client, traffic, name=f"p{n}", type_=t, config=make_config(t), workspace_id=workspace)
        ids.append(d["id"])

    # default page: everything, creation order
    client.observability.list(workspace_id=workspace)
    body = traffic.last_json()
    assert body["total_count"] == 6
    assert [d["id"] for d in body["data"]] == ids

    # limit=2, explicit offsets
    seen = []
    for off in (0, 2, 4):
        page = client.observability.list(workspace_id=workspace, offset=off, limit=2)
        body = traffic.last_json()
        assert body["total_count"] == 6
        assert [d["id"] for d in body["data"]] == ids[off:off + 2]
        assert [d.id for d in page.result.data] == ids[off:off + 2]
        seen += [d["id"] for d in body["data"]]
    assert seen == ids

    client.observability.list(workspace_id=workspace, offset=5, limit=2)
    assert [d["id"] for d in traffic.last_json()["data"]] == ids[5:]
    client.observability.list(workspace_id=workspace, offset=50, limit=2)
    assert traffic.last_json() == {"data": [], "total_count": 6}

    # SDK auto-paging via next()
    page = client.observability.list(workspace_id=workspace, limit=2)
    pages = []
    while page is not None:
        pages.append([d.id for d in page.result.data])
        assert page.result.total_count == 6
        page = page.next()
        assert len(pages) < 10, "next() does not terminate"
    flat = [i for p in pages for i in p]
    assert flat == ids
    assert [len(p) for p in pages if p] == [2, 2, 2]

    # 5 destinations (odd count): next() stops after the short last page
    client.observability.delete(id=ids[-1])
    page = client.observability.list(workspace_id=workspace, limit=2)
    pages = []
    while page is not None:
        pages.append([d.id for d in page.result.data])
        assert page.result.total_count == 5
        page = page.next()
        assert len(pages) < 10
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]

    # nothing of this workspace leaks into the default workspace listing
    default_ids = set(list_ids(client))
    assert not default_ids & set(ids)


@pytest.mark.parametrize("limit", [0, 101])
def test_list_limit_out_of_range(limit, client):
    api_error(lambda: client.observability.list(limit=limit), 400, errors.BadRequestResponseError)


def test_list_limit_100_ok(client):
    page = client.observability.list(limit=100)
    assert page is not None


# --------------------------------------------------------------------------------------
# Per-type limit
# --------------------------------------------------------------------------------------


def test_sixth_destination_of_a_type_conflicts(client, api, traffic, workspace):
    ids = [
        create_raw(client, traffic, name=f"ph{n}", type_="posthog", config=make_config("posthog"),
                   workspace_id=workspace)["id"]
        for n in range(5)
    ]
    api_error(
        lambda: client.observability.create(name="ph6", type_="posthog", config=make_config("posthog"),
                                            workspace_id=workspace),
        409,
        errors.ConflictResponseError,
    )
    client.observability.list(workspace_id=workspace)
    assert traffic.last_json()["total_count"] == 5
    # other types are unaffected
    create_raw(client, traffic, name="wh", type_="webhook", config=webhook_cfg(), workspace_id=workspace)
    # the limit is per workspace
    other_ws = api.create_workspace()
    create_raw(client, traffic, name="ph-other", type_="posthog", config=make_config("posthog"),
               workspace_id=other_ws)
    # deleting frees a slot
    client.observability.delete(id=ids[0])
    create_raw(client, traffic, name="ph-again", type_="posthog", config=make_config("posthog"),
               workspace_id=workspace)
    api_error(
        lambda: client.observability.create(name="ph7", type_="posthog", config=make_config("posthog"),
                                            workspace_id=workspace),
        409,
        errors.ConflictResponseError,
    )


# --------------------------------------------------------------------------------------
# Authentication / authorization
# --------------------------------------------------------------------------------------


def test_workspace_key_is_forbidden(client, api, make_client, traffic, cleanup):
    k = api.create_key(name="ws-app")
    wc = make_client(k["key"])
    api_error(lambda: wc.observability.list(), 403, errors.ForbiddenResponseError, equals=MGMT_ONLY)
    api_error(
        lambda: wc.observability.create(name="x", type_="webhook", config=webhook_cfg()),
        403,
        errors.ForbiddenResponseError,
        equals=MGMT_ONLY,
    )
    d = create_raw(client, traffic, name="mgmt-owned", type_="webhook", config=webhook_cfg())
    cleanup.append(d["id"])
    api_error(lambda: wc.observability.get(id=d["id"]), 403, errors.ForbiddenResponseError, equals=MGMT_ONLY)
    api_error(lambda: wc.observability.update(id=d["id"], name="x"), 403, errors.ForbiddenResponseError,
              equals=MGMT_ONLY)
    api_error(lambda: wc.observability.delete(id=d["id"]), 403, errors.ForbiddenResponseError,
              equals=MGMT_ONLY)
    client.observability.get(id=d["id"])
    assert traffic.last_json()["data"] == d


@pytest.mark.parametrize("bad_key", ["sk-tc-v1-" + "0" * 64, "garbage", "sk-or-v1-" + "a" * 64])
def test_invalid_key_is_unauthorized(bad_key, make_client):
    c = make_client(bad_key)
    api_error(lambda: c.observability.list(), 401, errors.UnauthorizedResponseError)
    api_error(lambda: c.observability.create(name="x", type_="webhook", config=webhook_cfg()),
              401, errors.UnauthorizedResponseError)
    api_error(lambda: c.observability.get(id=str(uuid.uuid4())), 401, errors.UnauthorizedResponseError)


def test_missing_key_is_unauthorized(api, make_client):
    raw_error(api.request("GET", "/observability/destinations", use_key=False), 401)
    raw_error(api.request("POST", "/observability/destinations", use_key=False,
                          json_body={"name": "x", "type": "webhook", "config": webhook_cfg()}), 401)
    c = make_client(None)
    api_error(lambda: c.observability.list(), 401, errors.UnauthorizedResponseError)


# --------------------------------------------------------------------------------------
# Tenant / workspace isolation
# --------------------------------------------------------------------------------------


def test_other_tenant_destination_is_not_found(client, other_client, traffic, default_workspace_id):
    cfg = make_config("langfuse")
    b = create_raw(other_client, traffic, name="tenant-b", type_="langfuse", config=cfg)
    assert b["workspace_id"] != default_workspace_id
    try:
        api_error(lambda: client.observability.get(id=b["id"]), 404, errors.NotFoundResponseError)
        api_error(lambda: client.observability.update(id=b["id"], name="hijack", enabled=False),
                  404, errors.NotFoundResponseError)
        api_error(lambda: client.observability.delete(id=b["id"]), 404, errors.NotFoundResponseError)
        assert b["id"] not in list_ids(client)
        # tenant B still sees it, unchanged
        other_client.observability.get(id=b["id"])
        assert traffic.last_json()["data"] == b
        assert b["id"] in list_ids(other_client)
    finally:
        other_client.observability.delete(id=b["id"])


def test_other_tenant_sees_nothing_of_tenant_a(client, other_client, traffic, cleanup):
    a = create_raw(client, traffic, name="tenant-a", type_="webhook", config=webhook_cfg())
    cleanup.append(a["id"])
    assert a["id"] not in list_ids(other_client)
    api_error(lambda: other_client.observability.get(id=a["id"]), 404, errors.NotFoundResponseError)


def test_foreign_or_unknown_workspace_id_is_a_bad_request(client, api, other_client, other_tenant_key, traffic):
    """OpenRouter's spec answers an invalid workspace_id on list and create with 400; a foreign
    workspace answers exactly like a nonexistent one."""
    b_ws = api.create_workspace(key=other_tenant_key)
    b = create_raw(other_client, traffic, name="b", type_="webhook", config=webhook_cfg())
    b_default_ws = b["workspace_id"]
    other_client.observability.delete(id=b["id"])
    messages = set()
    for ws in (b_ws, b_default_ws, str(uuid.uuid4())):
        messages.add(api_error(
            lambda: client.observability.create(name="x", type_="webhook", config=webhook_cfg(),
                                                workspace_id=ws),
            400,
        ))
        messages.add(api_error(lambda: client.observability.list(workspace_id=ws), 400))
    assert messages == {"workspace_id does not name a workspace of this account"}, messages


def test_unknown_destination_id_is_not_found(client):
    rid = str(uuid.uuid4())
    api_error(lambda: client.observability.get(id=rid), 404, errors.NotFoundResponseError)
    api_error(lambda: client.observability.update(id=rid, name="x"), 404, errors.NotFoundResponseError)
    api_error(lambda: client.observability.delete(id=rid), 404, errors.NotFoundResponseError)


def test_destination_via_workspace_id_visible_by_id_from_management_key(client, traffic, workspace):
    """get/update/delete by id work for destinations in any workspace of the tenant."""
    d = create_raw(client, traffic, name="ws", type_="webhook", config=webhook_cfg(), workspace_id=workspace)
    client.observability.get(id=d["id"])
    assert traffic.last_json()["data"] == d
    client.observability.update(id=d["id"], name="ws-2")
    assert traffic.last_json()["data"]["workspace_id"] == workspace
    assert client.observability.delete(id=d["id"]).DELETED is True


# --------------------------------------------------------------------------------------
# Types OpenRouter documents (guides, dashboard) but not yet in the API enum the SDK was
# generated from: the SDK's open enum passes them through.
# --------------------------------------------------------------------------------------

BQ_KEY = json.dumps({
    "type": "service_account",
    "project_id": "my-gcp-project",
    "private_key_id": "abc123",
    "private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n",
    "client_email": "broadcast@my-gcp-project.iam.gserviceaccount.com",
    "token_uri": "https://oauth2.googleapis.com/token",
})


@pytest.mark.parametrize(
    "dtype,cfg,secret",
    [
        ("bigquery", {"projectId": "my-gcp-project", "serviceAccountKey": BQ_KEY}, "serviceAccountKey"),
        ("raindrop", {"writeKey": "rd-write-key-0123456789"}, "writeKey"),
    ],
)
def test_documented_types_outside_the_sdk_enum(dtype, cfg, secret, client, traffic, cleanup):
    res = client.observability.create(name=f"{dtype} x", type_=dtype, config=cfg)
    # The SDK's forward-compatible variant for types it was not generated with.
    assert type(res.data).__name__ == "UnknownObservabilityDestination", type(res.data)
    ex = traffic.last()
    assert ex.status == 201, ex.response_text
    created = ex.json()["data"]
    cleanup.append(created["id"])
    assert created["type"] == dtype
    assert created["config"][secret] == mask(cfg[secret])
    bad = dict(cfg)
    del bad[secret]
    api_error(
        lambda: client.observability.create(name="x", type_=dtype, config=bad),
        400,
        errors.BadRequestResponseError,
        startswith=f"config.{secret} is required for type {dtype}",
    )
