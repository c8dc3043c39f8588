INSERT INTO webhook_goal_counts (goal_id, minute, completions)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[])
ON CONFLICT (goal_id, minute)
DO UPDATE SET completions = greatest(webhook_goal_counts.completions, EXCLUDED.completions)
