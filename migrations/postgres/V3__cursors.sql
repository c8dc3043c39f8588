-- Where each tailing stream has got to. One row per stream (for example
-- the trigger engine's position in a ClickHouse target table), updated in
-- the same transaction as the outbox rows it produced.

CREATE TABLE webhook_cursors (
    stream text PRIMARY KEY,
    position timestamptz NOT NULL,
    state jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT webhook_cursors_stream_format CHECK (stream ~ '^[a-z0-9_.:-]{1,200}$'),
    CONSTRAINT webhook_cursors_state_object CHECK (jsonb_typeof(state) = 'object')
);
