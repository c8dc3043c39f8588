-- check-binds: 1, 'name', 'checksum'
INSERT INTO {database}.plausible_webhooks_migrations (version, name, checksum) VALUES (?, ?, ?)
