SELECT coalesce(max(version), 0)::int4 FROM plausible_webhooks_schema_history
