-- check-binds: 1, 1700000000
-- The three pages with the most visitors on a site since a time.
SELECT pathname, uniq(user_id) AS visitors
FROM {database}.{events_table}
WHERE site_id = ? AND timestamp >= toDateTime(?) AND name = 'pageview'
GROUP BY pathname
ORDER BY visitors DESC, pathname
LIMIT 3
