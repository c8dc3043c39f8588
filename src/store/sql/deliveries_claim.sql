-- Leases up to $1 due deliveries for $2 seconds, oldest first, at most $4
-- of any one webhook and none of the webhooks in $3 (those already at their
-- limit of requests in flight), so that one webhook's backlog cannot take
-- every place. Rows leased by a live worker are skipped; rows whose lease
-- expired (a crashed worker) are due again.
UPDATE webhook_deliveries AS d
SET leased_until = now() + make_interval(secs => $2::float8)
FROM (
    SELECT id
    FROM webhook_deliveries
    WHERE id IN (
        SELECT id
        FROM (
            SELECT id, row_number() OVER (PARTITION BY webhook_id ORDER BY next_attempt_at) AS rank
            FROM (
                SELECT id, webhook_id, next_attempt_at
                FROM webhook_deliveries
                WHERE status = 'pending'
                  AND next_attempt_at <= now()
                  AND (leased_until IS NULL OR leased_until < now())
                  AND webhook_id <> ALL($3::bigint[])
                ORDER BY next_attempt_at
                LIMIT $1::bigint * 20
            ) AS oldest
        ) AS ranked
        WHERE rank <= $4::bigint
    )
      AND status = 'pending'
      AND (leased_until IS NULL OR leased_until < now())
    ORDER BY next_attempt_at
    LIMIT $1::bigint
    FOR UPDATE SKIP LOCKED
) AS due
WHERE d.id = due.id
RETURNING d.id, d.webhook_id, d.event_type, d.payload::text AS payload, d.attempts
