-- Goal ids the trigger engine keeps state for (counts, throttles) that are
-- no longer in Plausible's `goals`. The distinct ids of webhook_goal_counts
-- come from a loose scan of its primary key (one probe per goal, not a
-- scan of every minute).
WITH RECURSIVE counted AS (
    (SELECT goal_id FROM webhook_goal_counts ORDER BY goal_id LIMIT 1)
    UNION ALL
    SELECT (SELECT c.goal_id FROM webhook_goal_counts AS c
            WHERE c.goal_id > counted.goal_id
            ORDER BY c.goal_id LIMIT 1)
    FROM counted
    WHERE counted.goal_id IS NOT NULL
),
held AS (
    SELECT goal_id FROM counted WHERE goal_id IS NOT NULL
    UNION
    SELECT goal_id FROM webhook_goal_throttle
)
SELECT held.goal_id
FROM held
WHERE NOT EXISTS (SELECT 1 FROM goals AS g WHERE g.id = held.goal_id)
ORDER BY held.goal_id
