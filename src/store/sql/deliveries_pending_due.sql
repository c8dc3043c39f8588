-- Of the given deliveries, those still pending, with when each can next be
-- leased: its next attempt, or the end of a live lease if later.
SELECT id, webhook_id, greatest(next_attempt_at, coalesce(leased_until, next_attempt_at)) AS due
FROM webhook_deliveries
WHERE id = ANY($1::text[])
  AND status = 'pending'
