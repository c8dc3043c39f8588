-- check-binds: [(1, 1700000040)]
-- Completions per event key in the given (site, minute) buckets; the daemon
-- matches keys to goals.
SELECT site_id, toUInt32(minute), name, pathname, scroll_depth, prop_keys, prop_values,
       countMerge(completions)
FROM {database}.webhooks_goal_minutes
WHERE (site_id, minute) IN (
    SELECT tupleElement(b, 1), toDateTime(tupleElement(b, 2))
    FROM (SELECT arrayJoin(CAST(? AS Array(Tuple(UInt64, UInt32)))) AS b)
)
GROUP BY site_id, minute, name, pathname, scroll_depth, prop_keys, prop_values
