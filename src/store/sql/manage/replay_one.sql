-- Replays one failed delivery (docs/schema.md, "Replaying a failed
-- delivery").
UPDATE webhook_deliveries
SET status = 'pending', next_attempt_at = now()
WHERE id = $1 AND status = 'failed'
RETURNING id
