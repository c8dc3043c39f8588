-- Takes lease $1 for holder $2 under the new token $3 for $4 seconds, if it
-- is free, has run out on Postgres's clock, or is still held under $5 (the
-- taker's own previous token). Waits for a commit that holds
-- the row (the fence) to end first. Returns the seconds the lease has left;
-- no row when another daemon holds it.
INSERT INTO webhook_leases AS l (name, holder, token, lease_until, acquired_at, renewed_at)
VALUES (
    $1, $2, $3,
    clock_timestamp() + make_interval(secs => $4::float8),
    clock_timestamp(), clock_timestamp()
)
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder,
    token = EXCLUDED.token,
    lease_until = clock_timestamp() + make_interval(secs => $4::float8),
    acquired_at = clock_timestamp(),
    renewed_at = clock_timestamp()
WHERE l.lease_until <= clock_timestamp() OR l.token = $5
RETURNING extract(epoch FROM l.lease_until - clock_timestamp())::float8
