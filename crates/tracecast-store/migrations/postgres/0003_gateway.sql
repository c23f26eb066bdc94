-- The gateway's upstreams, per workspace (see the SQLite migration of the same name).
CREATE TABLE gateway_upstreams (
    id            TEXT COLLATE "C" PRIMARY KEY,
    workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
    config_enc    TEXT NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL,
    deleted_at    TEXT COLLATE "C"
);
CREATE INDEX gateway_upstreams_workspace ON gateway_upstreams (workspace_id) WHERE deleted_at IS NULL;
