-- Per site, minute, event name, path, scroll depth and custom properties:
-- completions and distinct visitors, enough to match event goals, page
-- goals (with `*` / `**` wildcards), scroll goals and property filters.
-- Engagement events are kept only when they carry a scroll depth (0-100),
-- for scroll goals; other events keep scroll_depth 0.
CREATE TABLE IF NOT EXISTS {database}.webhooks_goal_minutes (
    site_id UInt64,
    minute DateTime,
    name String,
    pathname String,
    scroll_depth UInt8,
    prop_keys Array(String),
    prop_values Array(String),
    completions AggregateFunction(count),
    visitors AggregateFunction(uniq, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (site_id, minute, name, pathname, scroll_depth, prop_keys, prop_values);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.webhooks_goal_minutes_mv
TO {database}.webhooks_goal_minutes
AS SELECT
    site_id,
    toStartOfMinute(timestamp) AS minute,
    name,
    pathname,
    if(name = 'engagement', scroll_depth, 0) AS scroll_depth,
    `meta.key` AS prop_keys,
    `meta.value` AS prop_values,
    countState() AS completions,
    uniqState(user_id) AS visitors
FROM {database}.{events_table}
WHERE name != 'engagement' OR scroll_depth <= 100
GROUP BY site_id, minute, name, pathname, scroll_depth, prop_keys, prop_values;
