-- One webhook's deliveries per hour over the last 24 hours, by how many
-- hours ago they were inserted (0 is the current hour), and by status.
SELECT floor(extract(epoch FROM now() - inserted_at) / 3600)::int AS hours_ago,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'pending') AS pending
FROM webhook_deliveries
WHERE webhook_id = $1 AND inserted_at > now() - interval '24 hours'
GROUP BY 1
ORDER BY 1
