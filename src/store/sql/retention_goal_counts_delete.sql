-- Up to $2 goal counts of the given (deleted) goals.
DELETE FROM webhook_goal_counts
WHERE (goal_id, minute) IN (
    SELECT goal_id, minute
    FROM webhook_goal_counts
    WHERE goal_id = ANY($1::bigint[])
    LIMIT $2
)
