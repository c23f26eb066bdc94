-- tracecast's management data on PostgreSQL: the same tables, columns and indexes as
-- migrations/sqlite/0001_init.sql, with PostgreSQL types where sqlx's `Any` driver can carry
-- them: BOOLEAN flags and DOUBLE PRECISION rates. Ids (UUIDs), timestamps (RFC 3339 UTC with
-- milliseconds) and JSON stay TEXT: the `Any` driver has no uuid, timestamptz or jsonb type,
-- and the store compares, orders and parses them as text on both backends.
--
-- Every text column the store orders or compares by is COLLATE "C" (byte order, like
-- SQLite's BINARY), so `ORDER BY created_at, id` and slug equality behave exactly as on
-- SQLite whatever the database's default collation.

CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL
);

CREATE TABLE workspaces (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    tenant_id           TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name                TEXT NOT NULL,
    slug                TEXT COLLATE "C" NOT NULL,
    description         TEXT,
    is_default          BOOLEAN NOT NULL,
    broadcast_enabled   BOOLEAN NOT NULL,
    settings            TEXT NOT NULL,
    created_at          TEXT COLLATE "C" NOT NULL,
    updated_at          TEXT COLLATE "C",
    deleted_at          TEXT COLLATE "C"
);
CREATE UNIQUE INDEX workspaces_tenant_slug ON workspaces (tenant_id, slug) WHERE deleted_at IS NULL;

CREATE TABLE api_keys (
    hash          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
    kind          TEXT COLLATE "C" NOT NULL,
    name          TEXT NOT NULL,
    label         TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL,
    expires_at    TEXT COLLATE "C",
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C"
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id, created_at);

CREATE TABLE destinations (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    workspace_id          TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
    type                  TEXT COLLATE "C" NOT NULL,
    name                  TEXT,
    enabled               BOOLEAN NOT NULL,
    privacy_mode          BOOLEAN NOT NULL,
    bg_cost               BOOLEAN NOT NULL,
    bg_identity           BOOLEAN NOT NULL,
    bg_request_context    BOOLEAN NOT NULL,
    bg_cost_allocation    BOOLEAN NOT NULL,
    sampling_rate         DOUBLE PRECISION NOT NULL,
    api_key_hashes        TEXT,
    filter_rules          TEXT,
    regions               TEXT NOT NULL,
    -- The whole config, encrypted: "tc1:<key id>:<base64 nonce+ciphertext>".
    config_enc            TEXT NOT NULL,
    created_at            TEXT COLLATE "C" NOT NULL,
    updated_at            TEXT COLLATE "C" NOT NULL,
    deleted_at            TEXT COLLATE "C"
);
CREATE INDEX destinations_workspace ON destinations (workspace_id, type) WHERE deleted_at IS NULL;
