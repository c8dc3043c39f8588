-- A test delivery (docs/schema.md, "Sending a test delivery").
INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
VALUES ($1, 'webhook.test', $2::text::json)
RETURNING id
