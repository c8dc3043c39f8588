-- check-binds: 0, 4294967295
-- The (site, minute) buckets that inserts between two server times
-- (inclusive) touched, with the newest insert time seen.
SELECT site_id, toUInt32(minute), toUInt32(max(inserted_at))
FROM {database}.webhooks_inserts
WHERE inserted_at >= toDateTime(?) AND inserted_at <= toDateTime(?)
GROUP BY site_id, minute
