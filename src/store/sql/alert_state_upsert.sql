-- Rows of webhooks deleted meanwhile are skipped.
INSERT INTO webhook_alert_state (webhook_id, event_type, last_fired_at)
SELECT v.webhook_id, v.event_type, v.fired_at
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS v(webhook_id, event_type, fired_at)
WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = v.webhook_id)
ON CONFLICT (webhook_id, event_type) DO UPDATE SET last_fired_at = EXCLUDED.last_fired_at
