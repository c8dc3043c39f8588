-- A success clears failing_since; a failure sets it if unset.
INSERT INTO webhook_endpoint_health AS h (webhook_id, failing_since, last_success_at)
SELECT v.webhook_id,
       CASE WHEN v.ok THEN NULL ELSE v.at END,
       CASE WHEN v.ok THEN v.at ELSE NULL END
FROM unnest($1::bigint[], $2::bool[], $3::timestamptz[]) AS v(webhook_id, ok, at)
WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = v.webhook_id)
ON CONFLICT (webhook_id) DO UPDATE
SET failing_since = CASE WHEN EXCLUDED.last_success_at IS NOT NULL THEN NULL
                         ELSE coalesce(h.failing_since, EXCLUDED.failing_since) END,
    last_success_at = coalesce(EXCLUDED.last_success_at, h.last_success_at),
    updated_at = now()
