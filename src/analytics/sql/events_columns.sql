-- check-binds: 'plausible_events_db', 'events_v2'
-- The columns of Plausible's events table, with their types.
SELECT name, type
FROM system.columns
WHERE database = ? AND table = ?
