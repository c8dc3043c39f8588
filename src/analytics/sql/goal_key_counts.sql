-- check-binds: [1, 2], [1700000040]
-- Completions per event key for the given sites in the given minutes (the
-- caller keeps the (site, minute) pairs it wants: a tuple IN over many
-- pairs is far slower on ClickHouse 18.16 than these two sets).
SELECT site_id, toUInt32(minute), name, pathname, scroll_depth, prop_keys, prop_values,
       countMerge(completions)
FROM {database}.webhooks_goal_minutes
WHERE site_id IN (SELECT arrayJoin(CAST(? AS Array(UInt64))))
  AND minute IN (SELECT toDateTime(arrayJoin(CAST(? AS Array(UInt32)))))
GROUP BY site_id, minute, name, pathname, scroll_depth, prop_keys, prop_values
