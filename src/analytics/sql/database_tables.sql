-- check-binds: 'plausible_events_db'
-- Every table and view of a database, with its engine.
SELECT name, engine
FROM system.tables
WHERE database = ?
