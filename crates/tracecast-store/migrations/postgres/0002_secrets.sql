-- Secrets hardening (see the SQLite migration of the same name).
--
-- 1. The server-issued AWS ExternalId of each workspace (S3 authMode iam_role). An ExternalId
--    is not a secret (AWS), it only has to be unique per customer.
ALTER TABLE workspaces ADD COLUMN aws_external_id TEXT;
UPDATE workspaces SET aws_external_id = 'tc-' || md5(id || random()::text || clock_timestamp()::text);

-- 2. Key labels show only the key prefix and the last 4 characters ("sk-tc-v1-...AbCd").
UPDATE api_keys
SET label = CASE WHEN label LIKE 'sk-tc-v1-%' THEN 'sk-tc-v1-...' ELSE '...' END
            || substr(label, length(label) - 3)
WHERE length(label) > 7;
