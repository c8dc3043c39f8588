-- check-binds: [1, 2], 1700000000
-- Distinct visitors per site since a minute (sites without rows are absent).
SELECT site_id, uniqMerge(visitors)
FROM {database}.webhooks_site_minutes
WHERE site_id IN (SELECT arrayJoin(CAST(? AS Array(UInt64))))
  AND minute >= toDateTime(?)
GROUP BY site_id
