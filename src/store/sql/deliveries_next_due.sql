-- When the next pending delivery becomes due (its lease, if any, included).
SELECT min(greatest(next_attempt_at, coalesce(leased_until, next_attempt_at)))
FROM webhook_deliveries
WHERE status = 'pending'
