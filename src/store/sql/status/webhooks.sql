-- Every webhook (or the one numbered $1) with its site, its endpoint health
-- and its deliveries' counts: pending, and failed or succeeded among those
-- inserted in the last 24 hours (each count through webhook_deliveries_log,
-- bounded by the day). Secrets, signing keys and header values are left
-- out; only the headers' names are read.
SELECT w.id, w.site_id, s.domain, w.url, w.format, w.signatures, w.description, w.enabled,
       w.event_types, w.spike_threshold, w.spike_window_minutes, w.drop_threshold,
       w.cooldown_minutes, w.goal_ids, w.goal_interval_seconds, w.max_per_minute,
       ARRAY(SELECT jsonb_object_keys(CASE WHEN jsonb_typeof(w.headers) = 'object'
                                           THEN w.headers ELSE '{}'::jsonb END)) AS header_names,
       w.previous_secret_expires_at, w.last_error, w.disabled_reason, w.disabled_at,
       h.failing_since, h.last_success_at, w.inserted_at, w.updated_at,
       c.pending, c.failed_day, c.succeeded_day, c.last_inserted_at
FROM webhooks w
JOIN sites s ON s.id = w.site_id
LEFT JOIN webhook_endpoint_health h ON h.webhook_id = w.id
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE d.status = 'pending') AS pending,
           count(*) FILTER (WHERE d.status = 'failed') AS failed_day,
           count(*) FILTER (WHERE d.status = 'succeeded') AS succeeded_day,
           max(d.inserted_at) AS last_inserted_at
    FROM webhook_deliveries d
    WHERE d.webhook_id = w.id AND d.inserted_at > now() - interval '24 hours'
) c
WHERE ($1::bigint IS NULL OR w.id = $1::bigint)
ORDER BY s.domain, w.id
LIMIT 1000
