-- Disables the given webhooks whose deliveries have all failed for at
-- least $2 seconds.
UPDATE webhooks AS w
SET enabled = false,
    disabled_reason = $3,
    disabled_at = now()
FROM webhook_endpoint_health AS h
WHERE h.webhook_id = w.id
  AND w.id = ANY($1::bigint[])
  AND w.enabled
  AND h.failing_since <= now() - make_interval(secs => $2::float8)
RETURNING w.id
