-- check-binds: 1, 1700000000
-- The three sources with the most visitors on a site since a time, leaving
-- out "Direct / None" (no source). Plausible copies each session's source
-- onto every event of the session (ClickhouseEventV2.merge_session), so
-- grouping events by referrer_source groups visitors by their session's
-- source, as Plausible's `visit:source` breakdown does, without sessions_v2.
SELECT referrer_source, uniq(user_id) AS visitors
FROM {database}.{events_table}
WHERE site_id = ? AND timestamp >= toDateTime(?) AND name != 'engagement'
  AND referrer_source != ''
GROUP BY referrer_source
ORDER BY visitors DESC, referrer_source
LIMIT 3
