SELECT webhook_id, goal_id, last_sent_at, pending_completions, pending_from
FROM webhook_goal_throttle
