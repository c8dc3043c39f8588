-- Every attempt of one delivery, in order.
SELECT attempt, started_at, duration_ms, status_code, error_kind, error, response_snippet
FROM webhook_delivery_attempts
WHERE delivery_id = $1
ORDER BY attempt
