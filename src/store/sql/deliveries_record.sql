-- Records the outcome of attempts: status, attempt count (one more if a
-- request was made), next attempt time (NULL keeps it), and the last
-- attempt's result; releases the lease. Fenced: an outcome changes its
-- delivery only if the delivery is still pending under the lease that
-- outcome's attempt was made on (its token). One whose lease was taken
-- over by another worker, or whose delivery was replayed, succeeded or
-- deleted meanwhile, changes nothing here. Returns the deliveries recorded
-- and their attempt count, which numbers the attempt.
UPDATE webhook_deliveries AS d
SET status = o.status,
    attempts = d.attempts + CASE WHEN o.requested THEN 1 ELSE 0 END,
    next_attempt_at = coalesce(o.next_attempt_at, d.next_attempt_at),
    leased_until = NULL,
    lease_token = NULL,
    last_attempt_at = o.attempted_at,
    last_status_code = o.status_code,
    last_error = o.error,
    delivered_at = coalesce(o.delivered_at, d.delivered_at),
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::timestamptz[],
            $6::timestamptz[], $7::int[], $8::text[], $9::timestamptz[])
     AS o(id, lease_token, status, requested, next_attempt_at, attempted_at, status_code,
          error, delivered_at)
WHERE d.id = o.id
  AND d.status = 'pending'
  AND d.lease_token = o.lease_token::uuid
RETURNING d.id::text, d.attempts
