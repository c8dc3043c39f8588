-- One delivery, with its payload.
SELECT id, webhook_id, event_type, status, attempts, next_attempt_at, last_attempt_at,
       last_status_code, last_error, delivered_at, inserted_at, triggered_at, payload::text AS payload
FROM webhook_deliveries
WHERE id = $1
