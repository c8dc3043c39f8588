CREATE TABLE IF NOT EXISTS {database}.plausible_webhooks_migrations (
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime DEFAULT now()
) ENGINE = MergeTree ORDER BY version
