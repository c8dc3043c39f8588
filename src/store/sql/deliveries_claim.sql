-- Leases up to $1 due deliveries for $2 seconds, oldest first; rows leased
-- by a live worker are skipped, rows whose lease expired (a crashed worker)
-- are due again.
UPDATE webhook_deliveries AS d
SET leased_until = now() + make_interval(secs => $2::float8)
FROM (
    SELECT id
    FROM webhook_deliveries
    WHERE status = 'pending'
      AND next_attempt_at <= now()
      AND (leased_until IS NULL OR leased_until < now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
) AS due
WHERE d.id = due.id
RETURNING d.id, d.webhook_id, d.event_type, d.payload::text AS payload, d.attempts
