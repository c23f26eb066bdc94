-- Secrets hardening.
--
-- 1. The AWS ExternalId the server passes to STS AssumeRole for a workspace's S3 destinations
--    (authMode iam_role): issued by the server, one per workspace, stable. Existing workspaces
--    get theirs now; new ones when their first S3 destination is created.
ALTER TABLE workspaces ADD COLUMN aws_external_id TEXT;
UPDATE workspaces SET aws_external_id = 'tc-' || lower(hex(randomblob(16)));

-- 2. Key labels show only the key prefix and the last 4 characters ("sk-tc-v1-...AbCd"). The
--    old labels (first 12 and last 4 characters) are cut down to that.
UPDATE api_keys
SET label = CASE WHEN label LIKE 'sk-tc-v1-%' THEN 'sk-tc-v1-...' ELSE '...' END
            || substr(label, length(label) - 3)
WHERE length(label) > 7;
