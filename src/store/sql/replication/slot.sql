-- One replication slot of this database, as slots.sql shows it. (Slot
-- names are cluster-wide: one of another database's is not this
-- daemon's, and creating it here fails, naming it.)
SELECT s.slot_name::text,
       s.active,
       s.active_pid,
       s.wal_status,
       (pg_current_wal_lsn() - s.confirmed_flush_lsn)::bigint AS lag_bytes
FROM pg_replication_slots AS s
WHERE s.slot_name = $1
  AND s.database = current_database()
