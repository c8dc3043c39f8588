-- The status page's overview figures, each from an index: pending
-- deliveries (webhook_deliveries_due), failed ones inserted in the last day
-- (webhook_deliveries_failed), successes in the last ten minutes
-- (webhook_deliveries_delivered), failing webhooks, the trigger lease and
-- cursor.
SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM webhook_deliveries
         WHERE status = 'failed' AND inserted_at > now() - interval '24 hours') AS failed_day,
       (SELECT count(*) FROM webhook_deliveries
         WHERE delivered_at IS NOT NULL AND delivered_at > now() - interval '10 minutes') AS delivered_10m,
       (SELECT count(*) FROM webhook_endpoint_health h JOIN webhooks w ON w.id = h.webhook_id
         WHERE h.failing_since IS NOT NULL AND w.enabled) AS failing_webhooks,
       (SELECT holder FROM webhook_leases WHERE name = 'triggers' AND lease_until > now()) AS leader,
       (SELECT extract(epoch FROM now() - position)::float8 FROM webhook_cursors
         WHERE stream = 'triggers') AS trigger_lag_secs,
       now() AS now
