-- The partitions of the tables the daemon's views fill, with their size:
-- active parts only (inactive ones are merged away and removed by the
-- server itself).
-- check-binds: 'plausible_events_db'
SELECT table, partition_id, toUInt64(sum(rows)) AS rows, toUInt64(sum(bytes_on_disk)) AS bytes
FROM system.parts
WHERE database = ?
  AND active
  AND table IN ('webhooks_site_minutes', 'webhooks_goal_minutes', 'webhooks_inserts')
GROUP BY table, partition_id
ORDER BY table, partition_id
