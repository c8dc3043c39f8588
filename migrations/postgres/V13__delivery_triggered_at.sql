-- When the event of a delivery was triggered: the newest insert into
-- Plausible's events that the trigger engine read for the delivery's site
-- in the tick that enqueued it (for `traffic.drop`, which no insert makes,
-- the check's time). NULL for test deliveries, replays written by hand and
-- rows older than this migration. The status page's "delivered within 30 s"
-- figure and the `plausible_webhooks_event_to_delivery_seconds` metric both
-- measure from it. See docs/schema.md.

ALTER TABLE webhook_deliveries
    ADD COLUMN triggered_at timestamptz,
    ADD CONSTRAINT webhook_deliveries_triggered_at_finite CHECK (
        isfinite(triggered_at) AND triggered_at < '10000-01-01 00:00:00+00');

-- The status page's figures over the last hour and day: events by their
-- triggering time. The column is written once, at insert, so the index
-- costs the scheduler's updates nothing (they stay HOT where they were).
CREATE INDEX webhook_deliveries_triggered ON webhook_deliveries (triggered_at)
    WHERE triggered_at IS NOT NULL;

-- The status page's deliveries per minute: recent successes by delivery
-- time. `delivered_at` is set in the update that also changes `status`,
-- which is already not HOT (status is in the partial indexes' predicates).
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (delivered_at)
    WHERE delivered_at IS NOT NULL;
