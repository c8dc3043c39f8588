-- The clusters this server's `remote_servers` defines.
SELECT DISTINCT cluster
FROM system.clusters
ORDER BY cluster
