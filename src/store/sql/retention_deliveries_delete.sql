-- Deletes up to $2 succeeded or failed deliveries created and last changed
-- more than $1 days ago (on Postgres's clock), with their attempts, oldest
-- first through webhook_deliveries_finished. Pending rows are never
-- touched. A row another transaction holds (a replay being written) is
-- skipped, and one replayed meanwhile no longer matches when it is locked.
-- Returns how many rows each table lost.
WITH doomed AS (
    SELECT id
    FROM webhook_deliveries
    WHERE status IN ('succeeded', 'failed')
      AND inserted_at < now() - make_interval(days => $1::int)
      AND updated_at < now() - make_interval(days => $1::int)
    ORDER BY inserted_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
attempts AS (
    DELETE FROM webhook_delivery_attempts AS a
    USING doomed
    WHERE a.delivery_id = doomed.id
    RETURNING 1
),
deliveries AS (
    DELETE FROM webhook_deliveries AS d
    USING doomed
    WHERE d.id = doomed.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM deliveries) AS deliveries,
       (SELECT count(*) FROM attempts) AS attempts
