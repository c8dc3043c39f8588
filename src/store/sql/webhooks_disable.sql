UPDATE webhooks
SET enabled = false, disabled_reason = $2, disabled_at = now()
WHERE id = $1 AND enabled
