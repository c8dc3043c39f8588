-- check-binds: 'plausible_events_db', 'events_v2'
-- The engine of one table (none if it does not exist): Plausible's events
-- table is `Replicated…` on a replicated ClickHouse.
SELECT engine
FROM system.tables
WHERE database = ? AND name = ?
