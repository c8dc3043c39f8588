-- What logical replication mode needs of the server and the user:
-- wal_level, the REPLICATION attribute (or superuser), the server version.
SELECT current_setting('wal_level') AS wal_level,
       (SELECT r.rolsuper OR r.rolreplication FROM pg_roles AS r WHERE r.rolname = current_user)
           AS may_replicate,
       current_user::text AS role,
       current_setting('server_version_num')::int AS version
