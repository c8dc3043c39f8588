-- check-binds: [1, 2]
-- Which of the given sites have ever had traffic since the views existed.
SELECT DISTINCT site_id
FROM {database}.webhooks_site_minutes
WHERE site_id IN (SELECT arrayJoin(CAST(? AS Array(UInt64))))
