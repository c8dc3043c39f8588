-- Per webhook: since when every delivery attempt has failed (NULL after a
-- success), for disabling endpoints that stay dead. Written by the delivery
-- scheduler in the transaction that records the attempts.
CREATE TABLE webhook_endpoint_health (
    webhook_id bigint PRIMARY KEY REFERENCES webhooks (id) ON DELETE CASCADE,
    failing_since timestamptz,
    last_success_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
