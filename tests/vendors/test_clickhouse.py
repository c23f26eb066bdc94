"""The `clickhouse` exporter's golden row (crates/tracecast-exporters/tests/golden/clickhouse.jsonl)
inserted with ClickHouse's own engine (chdb) into the table the docs print and into OpenRouter's
own table (the fixture crates/tracecast-exporters/tests/clickhouse_support/openrouter_ddl.sql,
copied from the DDL OpenRouter's dashboard prints; `DateTime64(3)` without a zone), as
`INSERT ... FORMAT JSONEachRow` with the settings the exporter sends, then read back with the
JSON functions of OpenRouter's ClickHouse guide.

The engine runs in a time zone that is not UTC (TZ is set before chdb is loaded): a time sent
without a zone would be read in it and land shifted."""

import json
import os
import tempfile
import time
from pathlib import Path

SERVER_TZ = "Asia/Kolkata"
os.environ["TZ"] = SERVER_TZ
time.tzset()

from chdb import session  # noqa: E402  (after TZ, which the engine reads when it loads)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "crates/tracecast-exporters/tests/golden/clickhouse.jsonl"
DOCS = ROOT / "docs/destinations/clickhouse.md"
OPENROUTER_DDL = ROOT / "crates/tracecast-exporters/tests/clickhouse_support/openrouter_ddl.sql"
WORKSPACE = "0b7a4d2e-5c1f-4e3a-9d6b-2f8e1c4a7b90"
# created_at of the golden record, 2026-01-01T13:37:42.250Z, and its end (+1523.5 ms).
START_MS = 1767274662250
END_MS = 1767274663773
INSERT = ("INSERT INTO tc.{table} SETTINGS date_time_input_format = 'best_effort', "
          "input_format_skip_unknown_fields = 0 FORMAT JSONEachRow\n")


def documented_ddl_v2():
    docs = DOCS.read_text()
    start = docs.index("CREATE TABLE IF NOT EXISTS `OPENROUTER_TRACES`")
    ddl = docs[start:docs.index(";\n", start) + 1]
    v2 = next(l for l in docs.splitlines() if l.strip().startswith("`CACHE_WRITE_TOKENS`"))
    marker = "COMMENT 'reasoning tokens',\n"
    assert marker in ddl
    return ddl.replace(marker, marker + v2 + "\n")


def test_golden_row_goes_into_the_documented_table():
    row = GOLDEN.read_text()
    assert row.endswith("\n") and row.count("\n") == 1
    s = new_session()
    s.query(documented_ddl_v2())
    s.query(INSERT.format(table="OPENROUTER_TRACES") + row)
    out = s.query(
        """SELECT TRACE_ID, toString(TIMESTAMP) AS ts, toString(END_TIME) AS te, TOTAL_TOKENS,
                  CACHE_WRITE_TOKENS, JSONExtractString(METADATA, 'order_id') AS order_id,
                  JSONExtractString(ATTRIBUTES, 'gen_ai.request.model') AS requested_model,
                  JSONExtractString(JSONExtractRaw(INPUT, 'messages'), 1, 'role') AS first_role,
                  JSONExtractString(OUTPUT, 'completion') AS completion
           FROM tc.OPENROUTER_TRACES""",
        "JSONEachRow",
    )
    got = json.loads(out.bytes().decode().strip())
    assert got["TRACE_ID"] == "order_processing_001"
    assert got["ts"] == "2026-01-01 13:37:42.250"
    assert got["te"] == "2026-01-01 13:37:43.773"
    assert int(got["TOTAL_TOKENS"]) == 150
    assert int(got["CACHE_WRITE_TOKENS"]) == 4
    assert got["order_id"] == "ORD-12345"
    assert got["requested_model"] == "openai/gpt-4o"
    assert got["first_role"] == "system"
    assert got["completion"] == "Looking up the SKU."


def new_session():
    s = session.Session(tempfile.mkdtemp())
    assert s.query("SELECT timezone()", "TSV").bytes().decode().strip() == SERVER_TZ
    s.query("CREATE DATABASE IF NOT EXISTS tc")
    s.query("USE tc")
    return s


def test_golden_row_goes_into_openrouters_table_at_the_right_instant():
    row = json.loads(GOLDEN.read_text())
    # The golden row is schema v2; OpenRouter's table has no CACHE_WRITE_TOKENS column (a v1
    # row is the same row without it).
    del row["CACHE_WRITE_TOKENS"]
    s = new_session()
    ddl = OPENROUTER_DDL.read_text()
    assert "`TIMESTAMP` DateTime64(3) COMMENT" in ddl and "`ENTITY_ID` String" in ddl
    s.query(ddl)
    s.query(INSERT.format(table="OPENROUTER_TRACES") + json.dumps(row) + "\n")
    out = s.query(
        """SELECT toUnixTimestamp64Milli(TIMESTAMP) AS ts, toUnixTimestamp64Milli(START_TIME) AS st,
                  toUnixTimestamp64Milli(END_TIME) AS te, toString(TIMESTAMP, 'UTC') AS utc,
                  ENTITY_ID, ORGANIZATION_ID, PROVIDER_SLUG, DURATION_MS, STATUS, TOTAL_TOKENS,
                  JSONExtractString(METADATA, 'order_id') AS order_id
           FROM tc.OPENROUTER_TRACES""",
        "JSONEachRow",
    )
    got = json.loads(out.bytes().decode().strip())
    assert int(got["ts"]) == START_MS
    assert int(got["st"]) == START_MS
    assert int(got["te"]) == END_MS
    assert got["utc"] == "2026-01-01 13:37:42.250"
    assert got["ENTITY_ID"] == WORKSPACE
    assert got["ORGANIZATION_ID"] is None and got["PROVIDER_SLUG"] is None
    assert got["DURATION_MS"] == 1523.5
    assert got["STATUS"] == "ok" and int(got["TOTAL_TOKENS"]) == 150
    assert got["order_id"] == "ORD-12345"
