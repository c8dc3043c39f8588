-- One webhook's attempts in the last 24 hours: how many, how many got a
-- 2xx, and their median and 95th percentile duration. Attempts are found
-- through their deliveries of the last 48 hours (webhook_deliveries_log),
-- which holds every attempt of the last day under the default retry
-- schedule (about 27 hours end to end).
SELECT count(*) AS attempts,
       count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS succeeded,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms)::float8 AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms)::float8 AS p95_ms
FROM webhook_deliveries d
JOIN webhook_delivery_attempts a ON a.delivery_id = d.id
WHERE d.webhook_id = $1
  AND d.inserted_at > now() - interval '48 hours'
  AND a.started_at > now() - interval '24 hours'
