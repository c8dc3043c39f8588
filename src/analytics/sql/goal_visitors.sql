-- check-binds: 1, 1700000000, 1700000600, 'pageview', '^/blog/.*$', 0, 100, ['plan\0pro'], ['coupon']
-- Distinct visitors who completed one goal in a range of minutes. The goal
-- is given as constants: event name, path regex (empty for any path), scroll
-- depth range, and its property filters: `key\0value` for each property
-- whose value must be as given, and the keys whose value must read as ''
-- (absent or empty). An event's property is its first value for the key,
-- as `prop_values[indexOf(prop_keys, key)]` reads it.
SELECT uniqMerge(visitors)
FROM {database}.webhooks_goal_minutes
WHERE site_id = ?
  AND minute >= toDateTime(?) AND minute <= toDateTime(?)
  AND name = ?
  AND match(pathname, ?)
  AND scroll_depth >= ? AND scroll_depth <= ?
  AND hasAll(arrayFilter((p, n) -> n = 1,
                         arrayMap((k, v) -> concat(k, '\0', v), prop_keys, prop_values),
                         arrayEnumerateUniq(prop_keys)),
             CAST(? AS Array(String)))
  AND NOT hasAny(arrayFilter((k, v, n) -> v != '' AND n = 1,
                             prop_keys, prop_values, arrayEnumerateUniq(prop_keys)),
                 CAST(? AS Array(String)))
