"""The `clickhouse` exporter's golden row (crates/tracecast-exporters/tests/golden/clickhouse.jsonl)
inserted with ClickHouse's own engine (chdb) into the table the docs print, as
`INSERT ... FORMAT JSONEachRow` with the settings the exporter sends, then read back with the
JSON functions of OpenRouter's ClickHouse guide."""

import json
import tempfile
from pathlib import Path

from chdb import session

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "crates/tracecast-exporters/tests/golden/clickhouse.jsonl"
DOCS = ROOT / "docs/destinations/clickhouse.md"


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
    s = session.Session(tempfile.mkdtemp())
    s.query("CREATE DATABASE IF NOT EXISTS tc")
    s.query("USE tc")
    s.query(documented_ddl_v2())
    s.query(
        "INSERT INTO tc.OPENROUTER_TRACES SETTINGS date_time_input_format = 'best_effort', "
        "input_format_skip_unknown_fields = 0 FORMAT JSONEachRow\n" + row
    )
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
    assert got["ts"] == "2026-01-01 00:00:00.250"
    assert got["te"] == "2026-01-01 00:00:01.773"
    assert int(got["TOTAL_TOKENS"]) == 150
    assert int(got["CACHE_WRITE_TOKENS"]) == 4
    assert got["order_id"] == "ORD-12345"
    assert got["requested_model"] == "openai/gpt-4o"
    assert got["first_role"] == "system"
    assert got["completion"] == "Looking up the SKU."
