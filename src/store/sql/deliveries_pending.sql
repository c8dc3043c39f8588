-- The pending deliveries, soonest first (by the scheduler's index), at most
-- $1 of them, with when each can next be leased: its next attempt, or the
-- end of a live lease if later, in milliseconds since the epoch (a float,
-- so that an infinite time reads as an infinite number rather than failing).
-- The scheduler's in-memory schedule is filled from this.
SELECT id::text,
       webhook_id,
       (extract(epoch FROM greatest(next_attempt_at, coalesce(leased_until, next_attempt_at))) * 1000)::float8 AS due_ms
FROM webhook_deliveries
WHERE status = 'pending'
ORDER BY next_attempt_at
LIMIT $1::bigint
