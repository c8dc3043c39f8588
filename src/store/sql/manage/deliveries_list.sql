-- One webhook's deliveries, newest first, optionally of one status
-- (served by webhook_deliveries_log).
SELECT id, webhook_id, event_type, status, attempts, next_attempt_at, last_attempt_at,
       last_status_code, last_error, delivered_at, inserted_at, triggered_at
FROM webhook_deliveries
WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2::text)
ORDER BY inserted_at DESC, id DESC
LIMIT $3
