-- Rows of webhooks deleted meanwhile are skipped.
INSERT INTO webhook_goal_throttle (webhook_id, goal_id, last_sent_at, pending_completions, pending_from)
SELECT v.webhook_id, v.goal_id, v.last_sent_at, v.pending, v.pending_from
FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::bigint[], $5::timestamptz[])
     AS v(webhook_id, goal_id, last_sent_at, pending, pending_from)
WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = v.webhook_id)
ON CONFLICT (webhook_id, goal_id) DO UPDATE
SET last_sent_at = EXCLUDED.last_sent_at,
    pending_completions = EXCLUDED.pending_completions,
    pending_from = EXCLUDED.pending_from
