-- Leases up to $1 due deliveries for $2 seconds, oldest first. Webhooks
-- with requests in flight are listed in $3 with their free places in $4
-- (none for a full one); any other webhook may take $5. So one webhook's
-- backlog never takes more places than it may use, and the others keep
-- theirs. Rows leased by a live worker are skipped; rows whose lease
-- expired (a crashed worker) are due again.
UPDATE webhook_deliveries AS d
SET leased_until = now() + make_interval(secs => $2::float8)
FROM (
    SELECT id
    FROM webhook_deliveries
    WHERE id IN (
        SELECT ranked.id
        FROM (
            SELECT oldest.id, oldest.webhook_id,
                   row_number() OVER (PARTITION BY oldest.webhook_id ORDER BY oldest.next_attempt_at) AS rank
            FROM (
                SELECT id, webhook_id, next_attempt_at
                FROM webhook_deliveries
                WHERE status = 'pending'
                  AND next_attempt_at <= now()
                  AND (leased_until IS NULL OR leased_until < now())
                  AND webhook_id <> ALL(
                      SELECT f.id FROM unnest($3::bigint[], $4::bigint[]) AS f(id, free) WHERE f.free <= 0
                  )
                ORDER BY next_attempt_at
                LIMIT $1::bigint * 4
            ) AS oldest
        ) AS ranked
        LEFT JOIN unnest($3::bigint[], $4::bigint[]) AS f(id, free) ON f.id = ranked.webhook_id
        WHERE ranked.rank <= coalesce(f.free, $5::bigint)
    )
      AND status = 'pending'
      AND (leased_until IS NULL OR leased_until < now())
    ORDER BY next_attempt_at
    LIMIT $1::bigint
    FOR UPDATE SKIP LOCKED
) AS due
WHERE d.id = due.id
RETURNING d.id, d.webhook_id, d.event_type, d.payload::text AS payload, d.attempts,
          d.inserted_at, d.last_attempt_at
