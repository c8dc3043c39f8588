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
-- triggering time, with their delivery time, so that the share delivered
-- within 30 s is read from the index alone. `triggered_at` is written once,
-- at insert; `delivered_at` in the update that also changes `status`, which
-- is not HOT anyway (status is in the partial indexes' predicates).
CREATE INDEX webhook_deliveries_triggered ON webhook_deliveries (triggered_at, delivered_at)
    WHERE triggered_at IS NOT NULL;

-- The status page's failures of the last day, in all and per webhook, from
-- the index alone. Failed deliveries are few; a delivery enters the index
-- when it fails for good (an update that changes `status`, not HOT anyway).
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (inserted_at, webhook_id)
    WHERE status = 'failed';

-- The status page's deliveries per minute: recent successes by delivery
-- time.
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (delivered_at)
    WHERE delivered_at IS NOT NULL;
