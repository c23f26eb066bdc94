-- OpenRouter's ClickHouse table (a test fixture, not tracecast's DDL).
-- Source: the dashboard's "Setup Instructions - ClickHouse" screen, published in OpenRouterTeam/docs
-- assets/guides/features/broadcast/clickhouse/broadcast-clickhouse-setup.png (commit c26125a5fa92cb52ac67f0c75b717229567db716),
-- linked from guides/features/broadcast/clickhouse.mdx. The statement down to "END_TIME" is copied
-- from that screenshot, which ends there: note `DateTime64(3)` WITHOUT a time zone. The rest is
-- INFERRED: the column names, order and nullability of OpenRouter's BigQuery DDL
-- (bigquery-setup-instructions.png, same commit) and the columns the ClickHouse guide's queries
-- read; the types of those lines and the ENGINE clause are guesses.
CREATE TABLE IF NOT EXISTS `OPENROUTER_TRACES` (
  `TRACE_ID` String COMMENT 'Unique trace identifier',
  `SPAN_ID` String COMMENT 'Unique span/observation identifier',
  `PARENT_SPAN_ID` Nullable(String) COMMENT 'Parent span ID for nested observations',
  `USER_ID` Nullable(String) COMMENT 'User who initiated the trace',
  `SESSION_ID` Nullable(String) COMMENT 'Session identifier',
  `ORGANIZATION_ID` Nullable(String) COMMENT 'Organization identifier',
  `ENTITY_ID` String COMMENT 'Entity that owns this trace',
  `API_KEY_NAME` Nullable(String) COMMENT 'User-defined name of the API key used',
  `TIMESTAMP` DateTime64(3) COMMENT 'Trace creation timestamp',
  `START_TIME` DateTime64(3) COMMENT 'Observation start time',
  `END_TIME` Nullable(DateTime64(3)) COMMENT 'Observation end time',
  -- inferred from here on (see above)
  `DURATION_MS` Nullable(Float64),
  `MODEL` String,
  `PROVIDER_NAME` Nullable(String),
  `PROVIDER_SLUG` Nullable(String),
  `STATUS` String,
  `LEVEL` String,
  `FINISH_REASON` Nullable(String),
  `PROMPT_TOKENS` UInt64,
  `COMPLETION_TOKENS` UInt64,
  `TOTAL_TOKENS` UInt64,
  `CACHED_TOKENS` UInt64,
  `REASONING_TOKENS` UInt64,
  `TOTAL_COST` Float64,
  `SPAN_TYPE` String,
  `ATTRIBUTES` String,
  `INPUT` String,
  `OUTPUT` String,
  `METADATA` String,
  `MODEL_PARAMETERS` String
)
ENGINE = MergeTree()
ORDER BY (TIMESTAMP, TRACE_ID);
