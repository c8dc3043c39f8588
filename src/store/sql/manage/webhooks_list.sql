-- Every webhook (of one site when $1 is set; the one numbered $2 when that
-- is set) with its site's domain, its endpoint health and the version it
-- was read at (updated_at), secrets and header values left out (the
-- signing keys are read only to show their public keys). Oldest first
-- within a site.
SELECT w.id, w.site_id, s.domain, w.url, w.description, w.enabled, w.event_types,
       w.spike_threshold, w.spike_window_minutes, w.drop_threshold, w.cooldown_minutes,
       w.goal_ids, w.goal_interval_seconds, w.previous_secret_expires_at,
       w.format, w.signatures, w.signing_key, w.previous_signing_key,
       w.previous_signing_key_expires_at, w.max_per_minute,
       CASE WHEN jsonb_typeof(w.headers) = 'object'
            THEN ARRAY(SELECT jsonb_object_keys(w.headers) ORDER BY 1) END AS header_names,
       w.last_error, w.disabled_reason, w.disabled_at,
       h.failing_since, h.last_success_at, w.inserted_at, w.updated_at
FROM webhooks w
JOIN sites s ON s.id = w.site_id
LEFT JOIN webhook_endpoint_health h ON h.webhook_id = w.id
WHERE ($1::bigint IS NULL OR w.site_id = $1::bigint)
  AND ($2::bigint IS NULL OR w.id = $2::bigint)
ORDER BY w.site_id, w.inserted_at, w.id
