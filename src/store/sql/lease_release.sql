-- Gives lease $1 up (on a clean shutdown) so that a standby takes it at
-- once, if token $2 still holds it.
UPDATE webhook_leases
SET lease_until = clock_timestamp()
WHERE name = $1 AND token = $2 AND lease_until > clock_timestamp()
