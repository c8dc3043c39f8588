-- One replication slot (of any database), as slots.sql shows it.
SELECT s.slot_name::text,
       s.active,
       s.active_pid,
       s.wal_status,
       (pg_current_wal_lsn() - s.confirmed_flush_lsn)::bigint AS lag_bytes
FROM pg_replication_slots AS s
WHERE s.slot_name = $1
