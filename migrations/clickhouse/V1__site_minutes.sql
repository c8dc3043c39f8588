-- Per site and minute: distinct visitors (a uniq state) and pageviews, for
-- traffic spikes and drops. `engagement` events are left out, as
-- Plausible's own visitor counts leave them out.
CREATE TABLE IF NOT EXISTS {database}.webhooks_site_minutes (
    site_id UInt64,
    minute DateTime,
    visitors AggregateFunction(uniq, UInt64),
    pageviews AggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (site_id, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.webhooks_site_minutes_mv
TO {database}.webhooks_site_minutes
AS SELECT
    site_id,
    toStartOfMinute(timestamp) AS minute,
    uniqState(user_id) AS visitors,
    sumState(toUInt64(name = 'pageview')) AS pageviews
FROM {database}.{events_table}
WHERE name != 'engagement'
GROUP BY site_id, minute;
