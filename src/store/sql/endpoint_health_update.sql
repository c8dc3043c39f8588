-- Per webhook in the batch: any success clears failing_since (and is the
-- last success); otherwise failing_since is set to the first failure if it
-- is unset. One row per webhook, so a batch may hold several attempts of
-- one webhook.
INSERT INTO webhook_endpoint_health AS h (webhook_id, failing_since, last_success_at)
SELECT v.webhook_id,
       CASE WHEN bool_or(v.ok) THEN NULL ELSE min(v.at) END,
       max(v.at) FILTER (WHERE v.ok)
FROM unnest($1::bigint[], $2::bool[], $3::timestamptz[]) AS v(webhook_id, ok, at)
WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = v.webhook_id)
GROUP BY v.webhook_id
ON CONFLICT (webhook_id) DO UPDATE
SET failing_since = CASE WHEN EXCLUDED.last_success_at IS NOT NULL THEN NULL
                         WHEN h.failing_since IS NULL
                              OR h.failing_since < (SELECT w.updated_at FROM webhooks w WHERE w.id = h.webhook_id)
                         THEN EXCLUDED.failing_since
                         ELSE h.failing_since END,
    last_success_at = coalesce(EXCLUDED.last_success_at, h.last_success_at),
    updated_at = now()
