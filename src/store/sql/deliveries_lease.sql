-- Leases the given deliveries for $2 seconds, those still due: pending,
-- next_attempt_at passed, and not leased by a live worker (a lease that has
-- run out belongs to a worker presumed dead). The scheduler picks the ids
-- from its in-memory schedule; this check is what decides, so a second
-- daemon, or a schedule that is out of date, can never take a delivery in
-- flight. A row another transaction is leasing is waited for and then
-- re-checked, so it is leased once. Each lease gets a new token, which the
-- outcome must carry to be recorded (see deliveries_record.sql).
UPDATE webhook_deliveries AS d
SET leased_until = now() + make_interval(secs => $2::float8),
    lease_token = gen_random_uuid(),
    updated_at = now()
WHERE d.id = ANY($1::text[])
  AND d.status = 'pending'
  AND d.next_attempt_at <= now()
  AND (d.leased_until IS NULL OR d.leased_until < now())
RETURNING d.id, d.webhook_id, d.lease_token::text AS lease_token, d.payload::text AS payload,
          d.attempts, d.next_attempt_at, d.inserted_at, d.last_attempt_at, d.triggered_at
