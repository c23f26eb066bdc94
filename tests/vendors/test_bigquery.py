"""The golden BigQuery insertAll body against Google's own BigQuery client.

`crates/tracecast-exporters/tests/golden/bigquery.json` is a `tabledata.insertAll` body and
`bigquery.sql` the table `tracecast schema bigquery` creates. `google-cloud-bigquery`'s
`Client.insert_rows` turns Python values into the `json` of each row with
`google.cloud.bigquery._helpers._record_field_to_json` and the table's `SchemaField`s. Checked
here: each of our rows, read back into Python values by column type, converts through that
function to the same row (same columns, same TIMESTAMP text, INT64 as decimal text, JSON columns as
JSON text, floats as numbers, `tags` as a list), and the request fields are the API's.
"""

import datetime
import json
import pathlib
import re

import pytest
from google.cloud.bigquery import SchemaField
from google.cloud.bigquery._helpers import _record_field_to_json

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "crates/tracecast-exporters/tests/golden"

COLUMN = re.compile(r"^\s+(\w+)\s+(ARRAY<(\w+)>|(\w+))( NOT NULL)?\s+OPTIONS")


def schema():
    fields = []
    for line in (GOLDEN / "bigquery.sql").read_text().splitlines():
        m = COLUMN.match(line)
        if not m:
            continue
        name, array_of, scalar, not_null = m.group(1), m.group(3), m.group(4), m.group(5)
        mode = "REPEATED" if array_of else ("REQUIRED" if not_null else "NULLABLE")
        fields.append(SchemaField(name, array_of or scalar, mode=mode))
    assert len(fields) > 20, "the DDL parses"
    return fields


def python_value(field, v):
    """What a client would hold for the value we sent."""
    if field.mode == "REPEATED":
        return [python_value(SchemaField(field.name, field.field_type), x) for x in v]
    t = field.field_type
    if t == "TIMESTAMP":
        return datetime.datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc
        )
    if t == "JSON":
        assert isinstance(v, str), f"{field.name}: JSON columns travel as JSON text"
        return json.loads(v)
    if t == "INT64":
        return int(v)
    if t == "FLOAT64":
        assert isinstance(v, (int, float)), field.name
        return float(v)
    assert t == "STRING" and isinstance(v, str), field.name
    return v


@pytest.fixture(scope="module")
def body():
    return json.loads((GOLDEN / "bigquery.json").read_text())


def test_request_fields(body):
    assert set(body) <= {"kind", "skipInvalidRows", "ignoreUnknownValues", "templateSuffix", "rows", "traceId"}
    assert body["kind"] == "bigquery#tableDataInsertAllRequest"
    for r in body["rows"]:
        assert set(r) == {"insertId", "json"}
        assert isinstance(r["insertId"], str) and r["insertId"]


def test_rows_are_what_googles_client_sends(body):
    fields = schema()
    by_name = {f.name: f for f in fields}
    for r in body["rows"]:
        ours = r["json"]
        unknown = set(ours) - set(by_name)
        assert not unknown, f"columns the table lacks: {unknown}"
        for f in fields:
            if f.mode == "REQUIRED":
                assert f.name in ours, f"required column {f.name} missing"
        values = {k: python_value(by_name[k], v) for k, v in ours.items()}
        google = _record_field_to_json(fields, values)
        assert set(google) == set(ours)
        for k, v in google.items():
            t = by_name[k].field_type
            if t == "JSON":
                assert json.loads(v) == json.loads(ours[k]), k
            else:
                assert v == ours[k], f"{k}: Google's client sends {v!r}, we send {ours[k]!r}"


def test_the_assertion_is_the_one_google_auth_makes():
    """`bigquery_assertion.json` is the shape of the JWT our exporter signs (recorded by the
    loopback token endpoint, volatile values replaced). Google's own `google-auth` library makes
    its service-account assertion from the same key; both must have the same header, the same
    claim set and values, and the same lifetime."""
    from google.auth import jwt
    from google.oauth2 import service_account

    ours = json.loads((GOLDEN / "bigquery_assertion.json").read_text())
    key_dir = GOLDEN.parent / "bigquery_support"
    info = {
        "type": "service_account",
        "project_id": "my-gcp-project",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": (key_dir / "test-only-service-account.key.pem").read_text(),
        "client_email": "broadcast@my-gcp-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/bigquery"]
    )
    assertion = creds._make_authorization_grant_assertion()
    public = (key_dir / "test-only-service-account.pub.pem").read_text()
    claims = jwt.decode(assertion, certs=public, audience=info["token_uri"])
    header = jwt.decode_header(assertion)
    header = {k: ("<private_key_id>" if k == "kid" else v) for k, v in header.items()}
    google = {
        "header": header,
        "claims": sorted(claims),
        "iss": "<client_email>" if claims["iss"] == info["client_email"] else "?",
        "aud": "<token_uri>" if claims["aud"] == info["token_uri"] else "?",
        "scope": claims["scope"],
        "lifetime_secs": claims["exp"] - claims["iat"],
    }
    assert ours == google
