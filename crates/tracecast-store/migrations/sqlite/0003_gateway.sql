-- The gateway's upstreams, per workspace (docs/gateway.md). The whole upstream document
-- (base URL, credential, model rules, ...) is sealed like a destination config:
-- "tc1:<key id>:<base64 nonce+ciphertext>", the row id as associated data.
CREATE TABLE gateway_upstreams (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    config_enc    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    deleted_at    TEXT
);
CREATE INDEX gateway_upstreams_workspace ON gateway_upstreams (workspace_id) WHERE deleted_at IS NULL;
