-- Extends lease $1, still held under token $2, to $3 seconds from now.
-- Returns the seconds it has left; no row when it has run out or been
-- taken over.
UPDATE webhook_leases
SET lease_until = clock_timestamp() + make_interval(secs => $3::float8),
    renewed_at = clock_timestamp()
WHERE name = $1 AND token = $2 AND lease_until > clock_timestamp()
RETURNING extract(epoch FROM lease_until - clock_timestamp())::float8
