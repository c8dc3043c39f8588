-- Enqueues deliveries; a dedupe key already used for the webhook, or a
-- webhook deleted meanwhile, skips the row.
INSERT INTO webhook_deliveries (webhook_id, event_type, payload, dedupe_key)
SELECT v.webhook_id, v.event_type, v.payload::json, v.dedupe_key
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
     AS v(webhook_id, event_type, payload, dedupe_key)
WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = v.webhook_id)
ON CONFLICT (webhook_id, dedupe_key) DO NOTHING
