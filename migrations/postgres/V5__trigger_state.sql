-- The trigger engine's durable state. It is written in the same transaction
-- as the outbox rows it produces and the `triggers` row of webhook_cursors,
-- so that a crash can neither lose nor repeat an event.

-- Goal completions already accounted for, per goal and minute. New
-- completions are the difference between ClickHouse's count for a minute
-- and this one, so late rows and merges are counted exactly once.
CREATE TABLE webhook_goal_counts (
    goal_id bigint NOT NULL,
    minute timestamptz NOT NULL,
    completions bigint NOT NULL,
    PRIMARY KEY (goal_id, minute),
    CONSTRAINT webhook_goal_counts_completions CHECK (completions >= 0)
);

CREATE INDEX webhook_goal_counts_minute ON webhook_goal_counts (minute);

-- The per-webhook, per-goal throttle: when the last goal.completed went out,
-- and the completions counted since, waiting for the interval to pass.
CREATE TABLE webhook_goal_throttle (
    webhook_id bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    goal_id bigint NOT NULL,
    last_sent_at timestamptz,
    pending_completions bigint NOT NULL DEFAULT 0,
    pending_from timestamptz,
    PRIMARY KEY (webhook_id, goal_id),
    CONSTRAINT webhook_goal_throttle_pending CHECK (
        pending_completions >= 0
        AND (pending_completions = 0) = (pending_from IS NULL)
    )
);

-- When a traffic.spike or traffic.drop last fired, for the cooldown.
CREATE TABLE webhook_alert_state (
    webhook_id bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    last_fired_at timestamptz NOT NULL,
    PRIMARY KEY (webhook_id, event_type),
    CONSTRAINT webhook_alert_state_event_type CHECK (
        event_type IN ('traffic.spike', 'traffic.drop')
    )
);
