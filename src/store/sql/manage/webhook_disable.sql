-- Disables a webhook by hand (no reason: that column is the daemon's).
UPDATE webhooks
SET enabled = false
WHERE id = $1
RETURNING id
