-- Every time in the daemon's tables is a finite time before the year 10000.
-- Postgres also stores `infinity`, `-infinity` and years up to 294276,
-- which no client library's time type holds, and which make a due time,
-- a lease or a retention cut mean nothing. Each column gets a check
-- constraint named <table>_<column>_finite (SQLSTATE 23514).
--
-- Rows that already hold such a time are fixed first, so that the migration
-- cannot fail on them: `-infinity` becomes 1970-01-01 00:00:00 UTC (earlier
-- than every real time: a due time that is due at once, an expiry that has
-- passed), `infinity` and times from the year 10000 on become
-- 9999-12-31 23:59:59 UTC (later than every real one), and a lease
-- (`leased_until`) that is not finite is cleared. docs/schema.md lists them.

CREATE FUNCTION pg_temp.finite(t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN t = '-infinity' THEN '1970-01-01 00:00:00+00'::timestamptz
        WHEN t >= '10000-01-01 00:00:00+00' THEN '9999-12-31 23:59:59+00'::timestamptz
        ELSE t
    END
$$;

UPDATE webhooks
SET previous_secret_expires_at = pg_temp.finite(previous_secret_expires_at),
    disabled_at = pg_temp.finite(disabled_at),
    inserted_at = pg_temp.finite(inserted_at),
    updated_at = pg_temp.finite(updated_at)
WHERE previous_secret_expires_at IS DISTINCT FROM pg_temp.finite(previous_secret_expires_at)
   OR disabled_at IS DISTINCT FROM pg_temp.finite(disabled_at)
   OR inserted_at <> pg_temp.finite(inserted_at)
   OR updated_at <> pg_temp.finite(updated_at);

UPDATE webhook_deliveries
SET next_attempt_at = pg_temp.finite(next_attempt_at),
    leased_until = CASE WHEN leased_until = pg_temp.finite(leased_until) THEN leased_until END,
    last_attempt_at = pg_temp.finite(last_attempt_at),
    delivered_at = pg_temp.finite(delivered_at),
    inserted_at = pg_temp.finite(inserted_at),
    updated_at = pg_temp.finite(updated_at)
WHERE next_attempt_at <> pg_temp.finite(next_attempt_at)
   OR leased_until IS DISTINCT FROM pg_temp.finite(leased_until)
   OR last_attempt_at IS DISTINCT FROM pg_temp.finite(last_attempt_at)
   OR delivered_at IS DISTINCT FROM pg_temp.finite(delivered_at)
   OR inserted_at <> pg_temp.finite(inserted_at)
   OR updated_at <> pg_temp.finite(updated_at);

UPDATE webhook_delivery_attempts
SET started_at = pg_temp.finite(started_at)
WHERE started_at <> pg_temp.finite(started_at);

UPDATE webhook_cursors
SET position = pg_temp.finite(position),
    updated_at = pg_temp.finite(updated_at)
WHERE position <> pg_temp.finite(position)
   OR updated_at <> pg_temp.finite(updated_at);

-- A goal count is keyed by its minute: a bad minute is one nobody reads
-- (the engine keeps the last goal_count_retention_hours), so it goes.
DELETE FROM webhook_goal_counts WHERE minute <> pg_temp.finite(minute);

UPDATE webhook_goal_throttle
SET last_sent_at = pg_temp.finite(last_sent_at),
    pending_from = pg_temp.finite(pending_from)
WHERE last_sent_at IS DISTINCT FROM pg_temp.finite(last_sent_at)
   OR pending_from IS DISTINCT FROM pg_temp.finite(pending_from);

UPDATE webhook_alert_state
SET last_fired_at = pg_temp.finite(last_fired_at)
WHERE last_fired_at <> pg_temp.finite(last_fired_at);

UPDATE webhook_endpoint_health
SET failing_since = pg_temp.finite(failing_since),
    last_success_at = pg_temp.finite(last_success_at),
    updated_at = pg_temp.finite(updated_at)
WHERE failing_since IS DISTINCT FROM pg_temp.finite(failing_since)
   OR last_success_at IS DISTINCT FROM pg_temp.finite(last_success_at)
   OR updated_at <> pg_temp.finite(updated_at);

DROP FUNCTION pg_temp.finite(timestamptz);

-- The checks are plain expressions (no function call), cheap on every
-- UPDATE the scheduler makes. A NULL passes, as in every CHECK.
ALTER TABLE webhooks
    ADD CONSTRAINT webhooks_previous_secret_expires_at_finite CHECK (
        isfinite(previous_secret_expires_at) AND previous_secret_expires_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhooks_disabled_at_finite CHECK (
        isfinite(disabled_at) AND disabled_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhooks_inserted_at_finite CHECK (
        isfinite(inserted_at) AND inserted_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhooks_updated_at_finite CHECK (
        isfinite(updated_at) AND updated_at < '10000-01-01 00:00:00+00');

ALTER TABLE webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_next_attempt_at_finite CHECK (
        isfinite(next_attempt_at) AND next_attempt_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhook_deliveries_leased_until_finite CHECK (
        isfinite(leased_until) AND leased_until < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhook_deliveries_last_attempt_at_finite CHECK (
        isfinite(last_attempt_at) AND last_attempt_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhook_deliveries_delivered_at_finite CHECK (
        isfinite(delivered_at) AND delivered_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhook_deliveries_inserted_at_finite CHECK (
        isfinite(inserted_at) AND inserted_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhook_deliveries_updated_at_finite CHECK (
        isfinite(updated_at) AND updated_at < '10000-01-01 00:00:00+00');

ALTER TABLE webhook_delivery_attempts
    ADD CONSTRAINT webhook_delivery_attempts_started_at_finite CHECK (
        isfinite(started_at) AND started_at < '10000-01-01 00:00:00+00');

ALTER TABLE webhook_cursors
    ADD CONSTRAINT webhook_cursors_position_finite CHECK (
        isfinite(position) AND position < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhook_cursors_updated_at_finite CHECK (
        isfinite(updated_at) AND updated_at < '10000-01-01 00:00:00+00');

ALTER TABLE webhook_goal_counts
    ADD CONSTRAINT webhook_goal_counts_minute_finite CHECK (
        isfinite(minute) AND minute < '10000-01-01 00:00:00+00');

ALTER TABLE webhook_goal_throttle
    ADD CONSTRAINT webhook_goal_throttle_last_sent_at_finite CHECK (
        isfinite(last_sent_at) AND last_sent_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhook_goal_throttle_pending_from_finite CHECK (
        isfinite(pending_from) AND pending_from < '10000-01-01 00:00:00+00');

ALTER TABLE webhook_alert_state
    ADD CONSTRAINT webhook_alert_state_last_fired_at_finite CHECK (
        isfinite(last_fired_at) AND last_fired_at < '10000-01-01 00:00:00+00');

ALTER TABLE webhook_endpoint_health
    ADD CONSTRAINT webhook_endpoint_health_failing_since_finite CHECK (
        isfinite(failing_since) AND failing_since < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhook_endpoint_health_last_success_at_finite CHECK (
        isfinite(last_success_at) AND last_success_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhook_endpoint_health_updated_at_finite CHECK (
        isfinite(updated_at) AND updated_at < '10000-01-01 00:00:00+00');
