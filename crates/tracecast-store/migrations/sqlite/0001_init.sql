-- tracecast's management data. Booleans are INTEGER 0/1, timestamps RFC 3339 text, ids UUID
-- text and JSON text, so the same statements run on SQLite and PostgreSQL.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE workspaces (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants(id),
    name                TEXT NOT NULL,
    slug                TEXT NOT NULL,
    description         TEXT,
    is_default          INTEGER NOT NULL,
    broadcast_enabled   INTEGER NOT NULL,
    settings            TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT,
    deleted_at          TEXT
);
CREATE UNIQUE INDEX workspaces_tenant_slug ON workspaces (tenant_id, slug) WHERE deleted_at IS NULL;

CREATE TABLE api_keys (
    hash          TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    label         TEXT NOT NULL,
    disabled      INTEGER NOT NULL,
    expires_at    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id, created_at);

CREATE TABLE destinations (
    id                    TEXT PRIMARY KEY,
    workspace_id          TEXT NOT NULL REFERENCES workspaces(id),
    type                  TEXT NOT NULL,
    name                  TEXT,
    enabled               INTEGER NOT NULL,
    privacy_mode          INTEGER NOT NULL,
    bg_cost               INTEGER NOT NULL,
    bg_identity           INTEGER NOT NULL,
    bg_request_context    INTEGER NOT NULL,
    bg_cost_allocation    INTEGER NOT NULL,
    sampling_rate         REAL NOT NULL,
    api_key_hashes        TEXT,
    filter_rules          TEXT,
    regions               TEXT NOT NULL,
    -- The whole config, encrypted: "tc1:<key id>:<base64 nonce+ciphertext>".
    config_enc            TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    deleted_at            TEXT
);
CREATE INDEX destinations_workspace ON destinations (workspace_id, type) WHERE deleted_at IS NULL;
