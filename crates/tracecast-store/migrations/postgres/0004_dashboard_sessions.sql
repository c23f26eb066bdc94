-- Signed-in dashboard sessions (see the SQLite migration of the same name).
CREATE TABLE dashboard_sessions (
    id_hash     TEXT COLLATE "C" PRIMARY KEY,
    key_hash    TEXT COLLATE "C" NOT NULL REFERENCES api_keys(hash) ON DELETE CASCADE,
    created_at  TEXT COLLATE "C" NOT NULL,
    expires_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
CREATE INDEX dashboard_sessions_key ON dashboard_sessions (key_hash);
