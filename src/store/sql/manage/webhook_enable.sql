-- Enables a webhook, clearing a reason the daemon disabled it for
-- (docs/schema.md, "Re-enable a webhook disabled by the daemon").
UPDATE webhooks
SET enabled = true, disabled_reason = NULL, disabled_at = NULL
WHERE id = $1
RETURNING id
