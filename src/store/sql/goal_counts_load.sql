SELECT goal_id, minute, completions FROM webhook_goal_counts WHERE minute >= $1
