"""The `snowflake` exporter's golden request (crates/tracecast-exporters/tests/golden/snowflake.json)
against Snowflake's SQL API request shape and, through fakesnow (a Snowflake emulator on DuckDB
with Snowflake's SQL dialect), two tables: the documented DDL and OpenRouter's own DDL (the
fixture crates/tracecast-exporters/tests/snowflake_support/openrouter_ddl.sql, copied from the
DDL OpenRouter's dashboard prints; see its header for what is copied and what is inferred).
The INSERT must run with its bind variables, and the example queries of OpenRouter's Snowflake
guide (https://openrouter.ai/docs/guides/features/broadcast/snowflake) must return the
expected results for the inserted rows."""

import json
import re
from pathlib import Path

import fakesnow
import snowflake.connector

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "crates/tracecast-exporters/tests/golden/snowflake.json"
DOCS = ROOT / "docs/destinations/snowflake.md"
OPENROUTER_DDL = ROOT / "crates/tracecast-exporters/tests/snowflake_support/openrouter_ddl.sql"
WORKSPACE = "0b7a4d2e-5c1f-4e3a-9d6b-2f8e1c4a7b90"

# Snowflake SQL API reference: fields of the POST /api/v2/statements body and bind types.
BODY_FIELDS = {"statement", "timeout", "database", "schema", "warehouse", "role", "bindings", "parameters"}
BIND_TYPES = {"FIXED", "REAL", "TEXT", "BINARY", "BOOLEAN", "DATE", "TIME",
              "TIMESTAMP_LTZ", "TIMESTAMP_NTZ", "TIMESTAMP_TZ"}

GUIDE_QUERIES = [
    """SELECT
  DATE_TRUNC('day', TIMESTAMP) as day,
  MODEL,
  SUM(TOTAL_COST) as total_cost,
  SUM(TOTAL_TOKENS) as total_tokens,
  COUNT(*) as request_count
FROM OPENROUTER_TRACES
WHERE TIMESTAMP >= DATEADD(day, -30, CURRENT_TIMESTAMP())
  AND STATUS = 'ok'
  AND SPAN_TYPE = 'GENERATION'
GROUP BY day, MODEL
ORDER BY day DESC, total_cost DESC""",
    """SELECT
  USER_ID,
  COUNT(DISTINCT TRACE_ID) as trace_count,
  COUNT(DISTINCT SESSION_ID) as session_count,
  SUM(TOTAL_TOKENS) as total_tokens,
  SUM(TOTAL_COST) as total_cost,
  AVG(DURATION_MS) as avg_duration_ms
FROM OPENROUTER_TRACES
WHERE TIMESTAMP >= DATEADD(day, -7, CURRENT_TIMESTAMP())
  AND SPAN_TYPE = 'GENERATION'
GROUP BY USER_ID
ORDER BY total_cost DESC""",
    """SELECT
  TRACE_ID,
  TIMESTAMP,
  MODEL,
  LEVEL,
  FINISH_REASON,
  METADATA as user_metadata,
  INPUT,
  OUTPUT
FROM OPENROUTER_TRACES
WHERE STATUS = 'error'
  AND TIMESTAMP >= DATEADD(hour, -1, CURRENT_TIMESTAMP())
ORDER BY TIMESTAMP DESC""",
    """SELECT
  API_KEY_NAME,
  COUNT(DISTINCT TRACE_ID) as trace_count,
  SUM(TOTAL_COST) as total_cost,
  SUM(PROMPT_TOKENS) as prompt_tokens,
  SUM(COMPLETION_TOKENS) as completion_tokens
FROM OPENROUTER_TRACES
WHERE TIMESTAMP >= DATEADD(day, -30, CURRENT_TIMESTAMP())
  AND SPAN_TYPE = 'GENERATION'
GROUP BY API_KEY_NAME
ORDER BY total_cost DESC""",
]


def golden():
    return json.loads(GOLDEN.read_text())


def documented_ddl_v2():
    docs = DOCS.read_text()
    start = docs.index("CREATE TABLE IF NOT EXISTS OPENROUTER_TRACES (")
    ddl = docs[start:docs.index(");\n", start) + 2]
    v2 = next(l for l in docs.splitlines() if l.strip().startswith("CACHE_WRITE_TOKENS "))
    marker = "COMMENT 'reasoning tokens',\n"
    assert marker in ddl
    return ddl.replace(marker, marker + v2 + "\n")


def bound_params(body):
    b = body["bindings"]
    out = []
    for i in range(1, len(b) + 1):
        ty, v = b[str(i)]["type"], b[str(i)]["value"]
        if v is None:
            out.append(None)
        elif ty == "FIXED":
            out.append(int(v))
        elif ty == "REAL":
            out.append(float(v))
        else:
            out.append(v)
    return out


def test_request_body_follows_the_sql_api_reference():
    body = golden()
    assert set(body) <= BODY_FIELDS
    assert body["database"] == "ANALYTICS" and body["schema"] == "TRACING"
    assert body["warehouse"] == "COMPUTE_WH"
    assert isinstance(body["timeout"], int) and body["timeout"] > 0
    b = body["bindings"]
    assert sorted(b, key=int) == [str(i) for i in range(1, len(b) + 1)]
    assert body["statement"].count("?") == len(b)
    for k, v in b.items():
        assert set(v) == {"type", "value"}, k
        assert v["type"] in BIND_TYPES, k
        assert v["value"] is None or isinstance(v["value"], str), k


def test_insert_runs_and_guide_queries_read_the_row():
    body = golden()
    with fakesnow.patch():
        conn = snowflake.connector.connect(database="ANALYTICS", schema="TRACING", paramstyle="qmark")
        cur = conn.cursor()
        cur.execute("CREATE DATABASE IF NOT EXISTS ANALYTICS")
        cur.execute("CREATE SCHEMA IF NOT EXISTS ANALYTICS.TRACING")
        cur.execute("USE SCHEMA ANALYTICS.TRACING")
        cur.execute(documented_ddl_v2())
        cur.execute(body["statement"], bound_params(body))
        assert cur.fetchall() == [(1,)]

        cur.execute(
            """SELECT TRACE_ID, SPAN_ID, TIMESTAMP, END_TIME, USER_ID, SESSION_ID, MODEL,
                      PROVIDER_NAME, STATUS, TOTAL_TOKENS, CACHE_WRITE_TOKENS, TOTAL_COST,
                      METADATA:trace_name::STRING, METADATA:order_id::STRING,
                      ATTRIBUTES:"gen_ai.request.model"::STRING,
                      INPUT:messages[0]:role::STRING, OUTPUT:completion::STRING,
                      MODEL_PARAMETERS:temperature::FLOAT
               FROM OPENROUTER_TRACES"""
        )
        row = cur.fetchone()
        assert row[0] == "order_processing_001"
        assert row[1] == "gen-1767225600-AbCdEfGhIjKlMnOpQrSt"
        assert str(row[2]) == "2026-01-01 13:37:42.250000"
        assert str(row[3]) == "2026-01-01 13:37:43.773000"
        assert row[4:10] == ("user_12345", "session_abc", "openai/gpt-4o", "OpenAI", "ok", 150)
        assert row[10] == 4
        assert abs(row[11] - 0.00123) < 1e-12
        assert row[12:] == ("Order Processing Pipeline", "ORD-12345", "openai/gpt-4o",
                            "system", "Looking up the SKU.", 0.2)

        # The guide's "Parsing input messages" query, as written.
        cur.execute(
            """SELECT
  TRACE_ID,
  INPUT:messages[0]:role::STRING as first_message_role,
  INPUT:messages[0]:content::STRING as first_message_content
FROM OPENROUTER_TRACES
WHERE SPAN_TYPE = 'GENERATION'"""
        )
        assert cur.fetchall() == [("order_processing_001", "system", "You extract orders.")]
        assert_guide_queries(cur)


def restamp_recent(cur):
    """Moves the rows' times to a few minutes ago, so the guide's "last N days/hours" filters
    select them; a copy of the row becomes a failed call by another user, in another session."""
    cur.execute(
        """UPDATE OPENROUTER_TRACES SET
             TIMESTAMP = DATEADD(minute, -5, CURRENT_TIMESTAMP())::TIMESTAMP_NTZ,
             START_TIME = DATEADD(minute, -5, CURRENT_TIMESTAMP())::TIMESTAMP_NTZ"""
    )
    cur.execute("CREATE TEMPORARY TABLE FAILED AS SELECT * FROM OPENROUTER_TRACES")
    cur.execute(
        """UPDATE FAILED SET TRACE_ID = 'trace-failed', SPAN_ID = 'gen-failed', STATUS = 'error',
             LEVEL = 'ERROR', USER_ID = 'user_2', SESSION_ID = 'session_2', TOTAL_COST = 0.5,
             TOTAL_TOKENS = 10, PROMPT_TOKENS = 10, COMPLETION_TOKENS = 0, DURATION_MS = 100"""
    )
    cur.execute("INSERT INTO OPENROUTER_TRACES SELECT * FROM FAILED")


def assert_guide_queries(cur):
    """The guide's example queries, as written, against the golden row (ok) and its failed copy."""
    restamp_recent(cur)
    cost, users, errors, keys = GUIDE_QUERIES
    cur.execute(cost)
    rows = cur.fetchall()
    assert [(r[1], approx(r[2]), r[3], r[4]) for r in rows] == [
        ("openai/gpt-4o", approx(0.00123), 150, 1)
    ], rows
    cur.execute(users)
    rows = cur.fetchall()
    assert [(r[0], r[1], r[2], r[3], approx(r[4]), approx(r[5])) for r in rows] == [
        ("user_2", 1, 1, 10, approx(0.5), approx(100.0)),
        ("user_12345", 1, 1, 150, approx(0.00123), approx(1523.5)),
    ], rows
    cur.execute(errors)
    rows = cur.fetchall()
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("trace-failed", "openai/gpt-4o", "ERROR", "tool_calls")
    ], rows
    assert json.loads(rows[0][5])["order_id"] == "ORD-12345"
    assert json.loads(rows[0][6])["messages"][0]["role"] == "system"
    assert json.loads(rows[0][7])["completion"] == "Looking up the SKU."
    cur.execute(keys)
    rows = cur.fetchall()
    # The golden record has no API key name (it comes from the ingest key).
    assert [(r[0], r[1], approx(r[2]), r[3], r[4]) for r in rows] == [
        (None, 2, approx(0.50123), 130, 30)
    ], rows
    # The guide's "Accessing VARIANT columns" query, with the sample's custom key `order_id`.
    cur.execute(
        """SELECT TRACE_ID, METADATA:order_id::STRING as order_id,
                  ATTRIBUTES:"gen_ai.request.model"::STRING as requested_model
           FROM OPENROUTER_TRACES
           WHERE METADATA:order_id IS NOT NULL ORDER BY TRACE_ID"""
    )
    assert cur.fetchall() == [
        ("order_processing_001", "ORD-12345", "openai/gpt-4o"),
        ("trace-failed", "ORD-12345", "openai/gpt-4o"),
    ]


def approx(x):
    return round(float(x), 9)


def test_openrouters_own_table_takes_the_insert():
    """OpenRouter's DDL has ENTITY_ID VARCHAR(256) NOT NULL: the INSERT must fill it (DuckDB
    enforces NOT NULL as Snowflake does)."""
    body = golden()
    ddl = OPENROUTER_DDL.read_text()
    assert '"ENTITY_ID" VARCHAR(256) NOT NULL' in ddl
    with fakesnow.patch():
        conn = snowflake.connector.connect(database="ANALYTICS", schema="TRACING", paramstyle="qmark")
        cur = conn.cursor()
        cur.execute("CREATE DATABASE IF NOT EXISTS ANALYTICS")
        cur.execute("CREATE SCHEMA IF NOT EXISTS ANALYTICS.TRACING")
        cur.execute("USE SCHEMA ANALYTICS.TRACING")
        cur.execute(ddl)
        # shouldIncludeCacheWriteTokens (the golden request) needs this column, as the docs say.
        cur.execute("ALTER TABLE OPENROUTER_TRACES ADD COLUMN CACHE_WRITE_TOKENS NUMBER(38,0) NOT NULL DEFAULT 0")
        cur.execute(body["statement"], bound_params(body))
        assert cur.fetchall() == [(1,)]
        cur.execute(
            """SELECT ENTITY_ID, ORGANIZATION_ID, PROVIDER_SLUG, TIMESTAMP, END_TIME, DURATION_MS,
                      STATUS, LEVEL, TOTAL_TOKENS, CACHE_WRITE_TOKENS
               FROM OPENROUTER_TRACES"""
        )
        row = cur.fetchone()
        assert row[0] == WORKSPACE
        assert row[1:3] == (None, None)
        assert str(row[3]) == "2026-01-01 13:37:42.250000"
        assert str(row[4]) == "2026-01-01 13:37:43.773000"
        assert float(row[5]) == 1523.5
        assert row[6:] == ("ok", "DEFAULT", 150, 4)
        assert_guide_queries(cur)
