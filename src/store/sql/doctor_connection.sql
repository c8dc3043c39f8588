-- The server's version and whether this session is encrypted.
SELECT current_setting('server_version') AS version,
       coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS ssl
