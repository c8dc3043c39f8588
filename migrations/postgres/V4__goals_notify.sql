-- Announces changes to Plausible's `goals` on channel `goals_changed` with
-- the payload {"op": "INSERT" | "UPDATE" | "DELETE", "id": <goal id>}, so
-- that the daemon sees goal edits at once. The trigger is created only if
-- Plausible's `goals` table exists; the daemon's periodic reconciliation
-- covers an install without it. The function is V1's, shared with
-- `webhooks`.

DO $$
BEGIN
    IF to_regclass('goals') IS NOT NULL THEN
        CREATE TRIGGER plausible_webhooks_goals_notify_change
            AFTER INSERT OR UPDATE OR DELETE ON goals
            FOR EACH ROW EXECUTE FUNCTION plausible_webhooks_notify_change('goals_changed');
    END IF;
END
$$;
