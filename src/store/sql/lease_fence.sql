-- The fence of a tick's commit: lease $1 is still held under token $2, and
-- stays so until this transaction ends (the row lock makes a takeover wait
-- for it). No row: the tick must write nothing.
SELECT 1 FROM webhook_leases
WHERE name = $1 AND token = $2 AND lease_until > clock_timestamp()
FOR UPDATE
