-- OpenRouter's Snowflake table (a test fixture, not tracecast's DDL).
-- Source: the dashboard's "Setup Instructions - Snowflake" screen, published in OpenRouterTeam/docs
-- assets/guides/features/broadcast/snowflake/snowflake-table-setup.png (commit c26125a5fa92cb52ac67f0c75b717229567db716),
-- linked from guides/features/broadcast/snowflake.mdx. The statement down to "MODEL" is copied from
-- that screenshot, which ends there. The rest is INFERRED: the column names, order and NOT NULL of
-- OpenRouter's BigQuery DDL (bigquery-setup-instructions.png, same commit) and the columns the
-- Snowflake guide's queries read; the Snowflake types of those lines are guesses.
CREATE TABLE IF NOT EXISTS "OPENROUTER_TRACES" (
    "TRACE_ID" VARCHAR(128) NOT NULL COMMENT 'Unique trace identifier',
    "SPAN_ID" VARCHAR(128) NOT NULL COMMENT 'Unique span/observation identifier',
    "PARENT_SPAN_ID" VARCHAR(128) COMMENT 'Parent span ID for nested observations',
    "USER_ID" VARCHAR(256) COMMENT 'User who initiated the trace',
    "SESSION_ID" VARCHAR(256) COMMENT 'Session identifier',
    "ORGANIZATION_ID" VARCHAR(256) COMMENT 'Organization identifier',
    "ENTITY_ID" VARCHAR(256) NOT NULL COMMENT 'Entity that owns this trace',
    "API_KEY_NAME" VARCHAR(256) COMMENT 'User-defined name of the API key used',
    "TIMESTAMP" TIMESTAMP_NTZ NOT NULL COMMENT 'Trace creation timestamp',
    "START_TIME" TIMESTAMP_NTZ NOT NULL COMMENT 'Observation start time',
    "END_TIME" TIMESTAMP_NTZ COMMENT 'Observation end time',
    "DURATION_MS" NUMBER(18, 3) COMMENT 'Duration in milliseconds',
    "MODEL" VARCHAR(256) COMMENT 'Model name (e.g., gpt-4, claude-3-opus)',
    -- inferred from here on (see above)
    "PROVIDER_NAME" VARCHAR(256),
    "PROVIDER_SLUG" VARCHAR(256),
    "STATUS" VARCHAR(32) NOT NULL,
    "LEVEL" VARCHAR(32) NOT NULL,
    "FINISH_REASON" VARCHAR(64),
    "PROMPT_TOKENS" NUMBER(18, 0) NOT NULL,
    "COMPLETION_TOKENS" NUMBER(18, 0) NOT NULL,
    "TOTAL_TOKENS" NUMBER(18, 0) NOT NULL,
    "CACHED_TOKENS" NUMBER(18, 0) NOT NULL,
    "REASONING_TOKENS" NUMBER(18, 0) NOT NULL,
    "TOTAL_COST" NUMBER(18, 9),
    "SPAN_TYPE" VARCHAR(32),
    "ATTRIBUTES" VARIANT,
    "INPUT" VARIANT,
    "OUTPUT" VARIANT,
    "METADATA" VARIANT,
    "MODEL_PARAMETERS" VARIANT
);
