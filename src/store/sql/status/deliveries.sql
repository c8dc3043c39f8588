-- One webhook's deliveries, newest first, after the cursor ($6, $7: the
-- last row's inserted_at and id), optionally of one status ($2), event type
-- ($3) and inserted within [$4, $5). Served by webhook_deliveries_log.
SELECT id, webhook_id, event_type, status, attempts, next_attempt_at, last_attempt_at,
       last_status_code, last_error, delivered_at, inserted_at, triggered_at
FROM webhook_deliveries
WHERE webhook_id = $1
  AND ($2::text IS NULL OR status = $2::text)
  AND ($3::text IS NULL OR event_type = $3::text)
  AND ($4::timestamptz IS NULL OR inserted_at >= $4::timestamptz)
  AND ($5::timestamptz IS NULL OR inserted_at < $5::timestamptz)
  AND ($6::timestamptz IS NULL OR (inserted_at, id) < ($6::timestamptz, $7::text))
ORDER BY inserted_at DESC, id DESC
LIMIT $8
