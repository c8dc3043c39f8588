-- A new webhook, as the web app creates one (docs/schema.md, "Create a
-- webhook").
INSERT INTO webhooks (site_id, url, secret, description, event_types,
                      spike_threshold, spike_window_minutes, drop_threshold,
                      cooldown_minutes, goal_ids, goal_interval_seconds,
                      format, signatures, signing_key, headers, max_per_minute)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
RETURNING id
