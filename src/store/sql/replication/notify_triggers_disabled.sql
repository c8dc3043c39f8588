-- The daemon's NOTIFY triggers that are disabled ('D'), by name.
SELECT t.tgname::text
FROM pg_trigger AS t
WHERE t.tgname IN ('webhooks_notify_change', 'webhook_deliveries_notify_insert',
                   'webhook_deliveries_notify_update', 'plausible_webhooks_goals_notify_change')
  AND t.tgenabled = 'D'
ORDER BY 1
