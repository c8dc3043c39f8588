-- The clusters this server's `remote_servers` defines, each with its
-- number of shards (the daemon supports one).
SELECT cluster, toUInt64(uniqExact(shard_num))
FROM system.clusters
GROUP BY cluster
ORDER BY cluster
