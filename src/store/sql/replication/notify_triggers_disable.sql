-- Logical replication mode needs no NOTIFY triggers; disabled, they cost
-- no commit its turn on NOTIFY's global lock. Kept (not dropped) so that
-- `migrate` in notify mode can enable them again.
DO $$
BEGIN
    ALTER TABLE webhooks DISABLE TRIGGER webhooks_notify_change;
    ALTER TABLE webhook_deliveries DISABLE TRIGGER webhook_deliveries_notify_insert;
    ALTER TABLE webhook_deliveries DISABLE TRIGGER webhook_deliveries_notify_update;
    IF EXISTS (SELECT FROM pg_trigger WHERE tgname = 'plausible_webhooks_goals_notify_change') THEN
        ALTER TABLE goals DISABLE TRIGGER plausible_webhooks_goals_notify_change;
    END IF;
END
$$;
