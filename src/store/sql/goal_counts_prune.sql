DELETE FROM webhook_goal_counts WHERE minute < $1
