-- The delivery scheduler keeps an in-memory schedule of pending deliveries,
-- so a notification now carries what it needs to place a delivery in it:
-- the webhook and the due time. The triggers filter with WHEN, so the
-- daemon's own state writes (a succeeded or failed delivery, a retry
-- scheduled later) do not call the function at all.

DROP TRIGGER webhook_deliveries_notify_change ON webhook_deliveries;

CREATE OR REPLACE FUNCTION webhook_deliveries_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('webhook_deliveries_changed',
                      json_build_object('op', TG_OP,
                                        'id', NEW.id,
                                        'webhook_id', NEW.webhook_id,
                                        'next_attempt_at', NEW.next_attempt_at)::text);
    RETURN NULL;
END
$$;

-- Every new delivery.
CREATE TRIGGER webhook_deliveries_notify_insert
    AFTER INSERT ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_notify_change();

-- A delivery that becomes pending (a replay), or a pending one brought
-- forward (due earlier than before).
CREATE TRIGGER webhook_deliveries_notify_update
    AFTER UPDATE OF status, next_attempt_at ON webhook_deliveries
    FOR EACH ROW
    WHEN (NEW.status = 'pending'
          AND (OLD.status <> 'pending' OR NEW.next_attempt_at < OLD.next_attempt_at))
    EXECUTE FUNCTION webhook_deliveries_notify_change();

-- The id's format is checked when an id is written, not on every UPDATE: a
-- table CHECK runs its regular expression for each row the scheduler
-- updates (twice per delivery), a domain's only when the value is set. The
-- constraint keeps its name, so the error is the same (SQLSTATE 23514,
-- constraint webhook_deliveries_id_format).
CREATE DOMAIN plausible_webhooks_delivery_id AS text
    CONSTRAINT webhook_deliveries_id_format CHECK (VALUE ~ '^msg_[A-Za-z0-9_-]{8,64}$');
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_id_format;
ALTER TABLE webhook_deliveries ALTER COLUMN id TYPE plausible_webhooks_delivery_id;

-- Room on each page for a row's next version, so that taking a lease (which
-- changes no indexed column) is a HOT update that adds no index entries.
ALTER TABLE webhook_deliveries SET (fillfactor = 70);

-- The scheduler updates each delivery twice (its lease, its outcome) and
-- sets updated_at itself; the touch trigger then has nothing to do, and
-- skipping it spares a PL/pgSQL call per row. Any other UPDATE that leaves
-- updated_at alone still gets now().
DROP TRIGGER webhook_deliveries_touch_updated_at ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_touch_updated_at
    BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW
    WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at)
    EXECUTE FUNCTION plausible_webhooks_touch_updated_at();
