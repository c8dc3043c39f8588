-- Every webhook (or the one numbered $1) with its site, its endpoint health
-- and its deliveries' counts: pending (webhook_deliveries_due), and failed
-- among those inserted in the last 24 hours (webhook_deliveries_failed, from
-- the index alone). Secrets, signing keys and header values are left out;
-- only the headers' names are read.
SELECT w.id, w.site_id, s.domain, w.url, w.format, w.signatures, w.description, w.enabled,
       w.event_types, w.spike_threshold, w.spike_window_minutes, w.drop_threshold,
       w.cooldown_minutes, w.goal_ids, w.goal_interval_seconds, w.max_per_minute,
       ARRAY(SELECT jsonb_object_keys(CASE WHEN jsonb_typeof(w.headers) = 'object'
                                           THEN w.headers ELSE '{}'::jsonb END)) AS header_names,
       w.previous_secret_expires_at, w.last_error, w.disabled_reason, w.disabled_at,
       h.failing_since, h.last_success_at, w.inserted_at, w.updated_at,
       coalesce(p.pending, 0) AS pending, coalesce(f.failed_day, 0) AS failed_day
FROM webhooks w
JOIN sites s ON s.id = w.site_id
LEFT JOIN webhook_endpoint_health h ON h.webhook_id = w.id
LEFT JOIN (
    SELECT webhook_id, count(*) AS pending
    FROM webhook_deliveries
    WHERE status = 'pending'
    GROUP BY webhook_id
) p ON p.webhook_id = w.id
LEFT JOIN (
    SELECT webhook_id, count(*) AS failed_day
    FROM webhook_deliveries
    WHERE status = 'failed' AND inserted_at > now() - interval '24 hours'
    GROUP BY webhook_id
) f ON f.webhook_id = w.id
WHERE ($1::bigint IS NULL OR w.id = $1::bigint)
ORDER BY s.domain, w.id
LIMIT 1000
