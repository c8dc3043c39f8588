-- Which (site, minute) buckets each insert touched, by the server time of
-- the insert. The trigger engine tails this log to find the buckets that
-- changed since its last tick, late rows included, without scanning the
-- aggregates. Partitioned by day so that old days can be dropped whole.
CREATE TABLE IF NOT EXISTS {database}.webhooks_inserts (
    inserted_at DateTime,
    site_id UInt64,
    minute DateTime
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(inserted_at)
ORDER BY (inserted_at, site_id, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.webhooks_inserts_mv
TO {database}.webhooks_inserts
AS SELECT
    now() AS inserted_at,
    site_id,
    toStartOfMinute(timestamp) AS minute
FROM {database}.{events_table}
GROUP BY site_id, minute;
