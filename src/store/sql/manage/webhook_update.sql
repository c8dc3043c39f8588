-- Writes every setting of a webhook, only if the row is still the version
-- that was read ($11): an edit made meanwhile is not overwritten.
UPDATE webhooks
SET url = $2, description = $3, event_types = $4,
    spike_threshold = $5, spike_window_minutes = $6, drop_threshold = $7,
    cooldown_minutes = $8, goal_ids = $9, goal_interval_seconds = $10
WHERE id = $1 AND updated_at = $11
RETURNING id
