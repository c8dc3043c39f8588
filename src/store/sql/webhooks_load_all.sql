-- Every enabled webhook with its site, oldest first within a site (the
-- order the 10-per-site cap keeps).
SELECT w.id, w.site_id, s.domain, s.timezone, w.url, w.secret, w.previous_secret,
       w.previous_secret_expires_at, w.event_types, w.spike_threshold,
       w.spike_window_minutes, w.drop_threshold, w.cooldown_minutes, w.goal_ids,
       w.goal_interval_seconds, w.format, w.signatures, w.signing_key,
       w.previous_signing_key, w.previous_signing_key_expires_at, w.headers,
       w.max_per_minute, w.last_error, w.inserted_at, w.updated_at
FROM webhooks w
JOIN sites s ON s.id = w.site_id
WHERE w.enabled
ORDER BY w.site_id, w.inserted_at, w.id
