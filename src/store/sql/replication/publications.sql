-- Creates or corrects the publications that logical replication mode
-- streams (`migrate` with changes.source = "replication"); idempotent.
--
-- plausible_webhooks: the registry's tables. Only the keys the change
-- source re-reads by are published (a webhook's secret or headers never
-- travel in the stream), and every kind of change, truncation included.
--
-- plausible_webhooks_outbox: the outbox, only what the delivery schedule
-- needs (the payload, up to 256 KiB a row, is not streamed), and only
-- inserts and updates: deletes are retention's. It is a publication of its
-- own because `publish` is set per publication, not per table.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'plausible_webhooks') THEN
        CREATE PUBLICATION plausible_webhooks
            FOR TABLE webhooks (id, site_id), goals (id, site_id), sites (id, domain, timezone)
            WITH (publish = 'insert, update, delete, truncate');
    ELSE
        ALTER PUBLICATION plausible_webhooks
            SET TABLE webhooks (id, site_id), goals (id, site_id), sites (id, domain, timezone);
        ALTER PUBLICATION plausible_webhooks
            SET (publish = 'insert, update, delete, truncate');
    END IF;
    IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'plausible_webhooks_outbox') THEN
        CREATE PUBLICATION plausible_webhooks_outbox
            FOR TABLE webhook_deliveries (id, webhook_id, status, next_attempt_at, lease_token)
            WITH (publish = 'insert, update');
    ELSE
        ALTER PUBLICATION plausible_webhooks_outbox
            SET TABLE webhook_deliveries (id, webhook_id, status, next_attempt_at, lease_token);
        ALTER PUBLICATION plausible_webhooks_outbox SET (publish = 'insert, update');
    END IF;
END
$$;
