-- Of the given deliveries, those still pending, with when each can next be
-- leased: its next attempt, or the end of a live lease if later, in
-- milliseconds since the epoch (see deliveries_pending.sql).
SELECT id::text,
       webhook_id,
       (extract(epoch FROM greatest(next_attempt_at, coalesce(leased_until, next_attempt_at))) * 1000)::float8 AS due_ms
FROM webhook_deliveries
WHERE id = ANY($1::text[])
  AND status = 'pending'
