-- Signed-in dashboard sessions (docs/dashboard.md). The browser holds a random session id in
-- an HttpOnly cookie; only its SHA-256 is stored here, so reading this table signs nobody in.
-- A session belongs to the management key it was opened with: deleting the key deletes its
-- sessions, and every request checks the key again (disabled, expired).
CREATE TABLE dashboard_sessions (
    id_hash     TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL REFERENCES api_keys(hash) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
CREATE INDEX dashboard_sessions_key ON dashboard_sessions (key_hash);
