-- Replays a webhook's failed deliveries inserted since $2 (docs/schema.md,
-- "Replay a webhook's failed deliveries").
UPDATE webhook_deliveries
SET status = 'pending', next_attempt_at = now()
WHERE webhook_id = $1 AND status = 'failed' AND inserted_at >= $2
RETURNING id
