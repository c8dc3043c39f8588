-- Drops one of the daemon's tables or views (`uninstall`); {object} is a
-- name read off the daemon's own migration files.
DROP TABLE IF EXISTS {database}.{object}
