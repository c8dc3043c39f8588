-- The outbox: one row per event to deliver to one webhook, written by the
-- daemon's triggers (and by the web app for `webhook.test` deliveries and
-- replays). See docs/schema.md.

CREATE TABLE webhook_deliveries (
    -- Sent as the `webhook-id` header: stable across retries, so receivers
    -- can deduplicate.
    id text PRIMARY KEY DEFAULT ('msg_' || replace(gen_random_uuid()::text, '-', '')),
    webhook_id bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    -- The exact body that is signed and sent. `json`, not `jsonb`, so that
    -- the bytes (and key order) never change between attempts.
    payload json NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Set while an attempt is in flight; a delivery whose lease has expired
    -- is retried (its worker is presumed dead).
    leased_until timestamptz,
    -- Unique per webhook: the same trigger firing twice cannot enqueue twice.
    dedupe_key text NOT NULL DEFAULT ('manual:' || gen_random_uuid()::text),
    last_attempt_at timestamptz,
    last_status_code integer,
    last_error text,
    delivered_at timestamptz,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT webhook_deliveries_id_format CHECK (id ~ '^msg_[A-Za-z0-9_-]{8,64}$'),
    CONSTRAINT webhook_deliveries_event_type_known CHECK (
        event_type IN ('traffic.spike', 'traffic.drop', 'goal.completed', 'webhook.test')
    ),
    CONSTRAINT webhook_deliveries_payload_object CHECK (json_typeof(payload) = 'object'),
    CONSTRAINT webhook_deliveries_payload_size CHECK (octet_length(payload::text) <= 262144),
    CONSTRAINT webhook_deliveries_status_known CHECK (
        status IN ('pending', 'succeeded', 'failed')
    ),
    CONSTRAINT webhook_deliveries_attempts CHECK (attempts >= 0),
    CONSTRAINT webhook_deliveries_dedupe_key CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    CONSTRAINT webhook_deliveries_dedupe UNIQUE (webhook_id, dedupe_key)
);

-- The scheduler's queue: pending deliveries by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
-- The web app's delivery log: a webhook's deliveries, newest first.
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, inserted_at DESC);

CREATE TRIGGER webhook_deliveries_touch_updated_at
    BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION plausible_webhooks_touch_updated_at();

-- Announces new work on channel `webhook_deliveries_changed`:
-- {"op": "INSERT", "id": ...} for a new delivery, and
-- {"op": "UPDATE", "id": ...} when a delivery becomes pending again (a replay).
CREATE FUNCTION webhook_deliveries_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.status = 'pending' AND OLD.status <> 'pending') THEN
        PERFORM pg_notify('webhook_deliveries_changed',
                          json_build_object('op', TG_OP, 'id', NEW.id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_deliveries_notify_change
    AFTER INSERT OR UPDATE OF status ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_notify_change();

-- Every attempt of every delivery: the delivery log's detail.
CREATE TABLE webhook_delivery_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    -- NULL when no response arrived.
    status_code integer,
    -- NULL on success; otherwise a short kind (such as `timeout` or
    -- `status`) listed in docs/schema.md.
    error_kind text,
    error text,
    -- At most 16 KiB of the response body, lossily decoded as UTF-8.
    response_snippet text,

    CONSTRAINT webhook_delivery_attempts_attempt CHECK (attempt >= 1),
    CONSTRAINT webhook_delivery_attempts_duration CHECK (duration_ms >= 0),
    CONSTRAINT webhook_delivery_attempts_status_code CHECK (status_code BETWEEN 100 AND 599),
    CONSTRAINT webhook_delivery_attempts_snippet CHECK (octet_length(response_snippet) <= 65536),
    CONSTRAINT webhook_delivery_attempts_unique UNIQUE (delivery_id, attempt)
);
