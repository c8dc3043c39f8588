-- The outbox at a glance: pending deliveries, those overdue, how overdue
-- the oldest is (seconds), and failed deliveries in the last day.
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= now()) AS due,
       coalesce(extract(epoch FROM now() - min(next_attempt_at)
                FILTER (WHERE status = 'pending' AND next_attempt_at <= now())), 0)::float8 AS overdue_secs,
       count(*) FILTER (WHERE status = 'failed' AND updated_at > now() - interval '1 day') AS failed_today
FROM webhook_deliveries
