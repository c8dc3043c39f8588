SELECT version, any(checksum) FROM {database}.plausible_webhooks_migrations GROUP BY version ORDER BY version
