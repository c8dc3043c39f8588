-- A logical slot for pgoutput. Changes committed after this returns are
-- kept for the slot until it confirms them.
SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')
