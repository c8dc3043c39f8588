-- The share of events delivered within 30 s of their triggering insert,
-- over the hour and the day that ended 30 s ago (an event younger than
-- that may still make it). Read through webhook_deliveries_triggered.
SELECT count(*) FILTER (WHERE triggered_at > now() - interval '1 hour 30 seconds') AS hour_events,
       count(*) FILTER (WHERE triggered_at > now() - interval '1 hour 30 seconds'
                          AND delivered_at <= triggered_at + interval '30 seconds') AS hour_fast,
       count(*) AS day_events,
       count(*) FILTER (WHERE delivered_at <= triggered_at + interval '30 seconds') AS day_fast
FROM webhook_deliveries
WHERE triggered_at IS NOT NULL
  AND triggered_at > now() - interval '24 hours 30 seconds'
  AND triggered_at <= now() - interval '30 seconds'
