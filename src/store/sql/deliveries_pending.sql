-- The pending deliveries, soonest first (by the scheduler's index), at most
-- $1 of them, with when each can next be leased: its next attempt, or the
-- end of a live lease if later. The scheduler's in-memory schedule is
-- filled from this.
SELECT id, webhook_id, greatest(next_attempt_at, coalesce(leased_until, next_attempt_at)) AS due
FROM webhook_deliveries
WHERE status = 'pending'
ORDER BY next_attempt_at
LIMIT $1::bigint
