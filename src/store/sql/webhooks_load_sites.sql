-- Every enabled webhook of the given sites ($1) and of the sites that the
-- given webhook ids ($2) now belong to.
SELECT w.id, w.site_id, s.domain, s.timezone, w.url, w.secret, w.previous_secret,
       w.previous_secret_expires_at, w.event_types, w.spike_threshold,
       w.spike_window_minutes, w.drop_threshold, w.cooldown_minutes, w.goal_ids,
       w.goal_interval_seconds, w.format, w.signatures, w.signing_key,
       w.previous_signing_key, w.previous_signing_key_expires_at, w.headers,
       w.max_per_minute, w.last_error, w.inserted_at, w.updated_at
FROM webhooks w
JOIN sites s ON s.id = w.site_id
WHERE w.enabled
  AND (w.site_id = ANY($1::bigint[])
       OR w.site_id IN (SELECT site_id FROM webhooks WHERE id = ANY($2::bigint[])))
ORDER BY w.site_id, w.inserted_at, w.id
