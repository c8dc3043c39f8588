-- Drops a slot (fails if a session holds it).
SELECT pg_drop_replication_slot($1)
