-- The replication slots of this database whose names start with $1 (the
-- daemon's prefix; `_` taken literally), with how far each lags behind the
-- server's WAL, in bytes (NULL when it has no confirmed position yet).
SELECT s.slot_name::text,
       s.active,
       s.active_pid,
       s.wal_status,
       (pg_current_wal_lsn() - s.confirmed_flush_lsn)::bigint AS lag_bytes
FROM pg_replication_slots AS s
WHERE s.database = current_database()
  AND s.slot_type = 'logical'
  AND left(s.slot_name::text, length($1)) = $1
ORDER BY s.slot_name
