-- Enqueues deliveries; a dedupe key already used for the webhook, or a
-- webhook deleted meanwhile, skips the row. $5 is each event's triggering
-- insert time in unix seconds (NULL when unknown).
INSERT INTO webhook_deliveries (webhook_id, event_type, payload, dedupe_key, triggered_at)
SELECT v.webhook_id, v.event_type, v.payload::json, v.dedupe_key, to_timestamp(v.triggered_at)
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])
     AS v(webhook_id, event_type, payload, dedupe_key, triggered_at)
WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = v.webhook_id)
ON CONFLICT (webhook_id, dedupe_key) DO NOTHING
