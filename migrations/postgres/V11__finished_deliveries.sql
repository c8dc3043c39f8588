-- Retention: succeeded and failed deliveries by age, so that the daemon's
-- retention pass finds the oldest in small batches without scanning the
-- outbox. On `inserted_at`, which never changes, rather than `updated_at`,
-- which the scheduler sets on every lease: an index on it would make each
-- lease a non-HOT update (see V7's fillfactor). The pass also requires
-- `updated_at` to be old, so a delivery replayed lately is kept. Pending
-- rows are not in the index at all.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (inserted_at)
    WHERE status IN ('succeeded', 'failed');
