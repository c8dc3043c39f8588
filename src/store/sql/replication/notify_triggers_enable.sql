-- Notify mode's triggers, enabled again (after a switch back from logical
-- replication).
DO $$
BEGIN
    ALTER TABLE webhooks ENABLE TRIGGER webhooks_notify_change;
    ALTER TABLE webhook_deliveries ENABLE TRIGGER webhook_deliveries_notify_insert;
    ALTER TABLE webhook_deliveries ENABLE TRIGGER webhook_deliveries_notify_update;
    IF EXISTS (SELECT FROM pg_trigger WHERE tgname = 'plausible_webhooks_goals_notify_change') THEN
        ALTER TABLE goals ENABLE TRIGGER plausible_webhooks_goals_notify_change;
    END IF;
END
$$;
