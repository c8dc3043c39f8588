-- Records the outcome of attempts: status, attempt count, next attempt time
-- (NULL keeps it), and the last attempt's result; releases the lease.
UPDATE webhook_deliveries AS d
SET status = o.status,
    attempts = o.attempts,
    next_attempt_at = coalesce(o.next_attempt_at, d.next_attempt_at),
    leased_until = NULL,
    last_attempt_at = o.attempted_at,
    last_status_code = o.status_code,
    last_error = o.error,
    delivered_at = coalesce(o.delivered_at, d.delivered_at),
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[],
            $6::int[], $7::text[], $8::timestamptz[])
     AS o(id, status, attempts, next_attempt_at, attempted_at, status_code, error, delivered_at)
WHERE d.id = o.id
