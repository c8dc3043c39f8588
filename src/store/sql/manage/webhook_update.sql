-- Writes every setting of a webhook, only if the row is still the version
-- that was read ($11): an edit made meanwhile is not overwritten. A NULL
-- signing key ($14) keeps the one there is. Headers are merged here, so
-- that stored values are never read: with $15 all are dropped first, then
-- those of $16 replace any of the same name in any case.
UPDATE webhooks
SET url = $2, description = $3, event_types = $4,
    spike_threshold = $5, spike_window_minutes = $6, drop_threshold = $7,
    cooldown_minutes = $8, goal_ids = $9, goal_interval_seconds = $10,
    format = $12, signatures = $13,
    signing_key = coalesce($14, signing_key),
    headers = (SELECT coalesce(jsonb_object_agg(h.key, h.value), '{}'::jsonb)
               FROM jsonb_each(CASE WHEN $15::boolean OR jsonb_typeof(headers) <> 'object'
                                    THEN '{}'::jsonb ELSE headers END) AS h
               WHERE lower(h.key) NOT IN (SELECT lower(k) FROM jsonb_object_keys($16::jsonb) AS k))
              || $16::jsonb,
    max_per_minute = $17
WHERE id = $1 AND updated_at = $11
RETURNING id
