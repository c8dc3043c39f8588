-- Announces changes to Plausible's `goals` on channel `goals_changed` with
-- the payload {"op": "INSERT" | "UPDATE" | "DELETE", "id": <goal id>}, so
-- that the daemon sees goal edits at once. The trigger is created only if
-- Plausible's `goals` table exists; the daemon's periodic reconciliation
-- covers an install without it.

CREATE FUNCTION plausible_webhooks_goals_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_id bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_id := OLD.id;
    ELSE
        row_id := NEW.id;
    END IF;
    PERFORM pg_notify('goals_changed', json_build_object('op', TG_OP, 'id', row_id)::text);
    RETURN NULL;
END
$$;

DO $$
BEGIN
    IF to_regclass('goals') IS NOT NULL THEN
        CREATE TRIGGER plausible_webhooks_goals_notify_change
            AFTER INSERT OR UPDATE OR DELETE ON goals
            FOR EACH ROW EXECUTE FUNCTION plausible_webhooks_goals_notify_change();
    END IF;
END
$$;
