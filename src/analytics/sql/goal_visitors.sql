-- check-binds: 1, 1700000000, 1700000600, 'pageview', '^/blog/.*$', 0, 100, '', '', '', '', '', '', '', '', ''
-- Distinct visitors who completed one goal in a range of minutes. The goal
-- is given as constants: event name, path regex (empty for any path), scroll
-- depth range, and up to three property filters (an empty key is no filter).
SELECT uniqMerge(visitors)
FROM {database}.webhooks_goal_minutes
WHERE site_id = ?
  AND minute >= toDateTime(?) AND minute <= toDateTime(?)
  AND name = ?
  AND match(pathname, ?)
  AND scroll_depth >= ? AND scroll_depth <= ?
  AND (? = '' OR prop_values[indexOf(prop_keys, ?)] = ?)
  AND (? = '' OR prop_values[indexOf(prop_keys, ?)] = ?)
  AND (? = '' OR prop_values[indexOf(prop_keys, ?)] = ?)
