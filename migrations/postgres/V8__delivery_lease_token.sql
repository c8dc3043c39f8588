-- Fenced delivery outcomes. Each lease gets a token of its own, and the
-- scheduler records an outcome only while the delivery is still pending
-- with that token: a worker whose lease ran out and was taken over by
-- another, or whose delivery was replayed or otherwise changed by the web
-- app meanwhile, can no longer overwrite the delivery's state (its attempt
-- is still logged). Recording an outcome clears the token.
ALTER TABLE webhook_deliveries ADD COLUMN lease_token uuid;

-- A delivery that becomes pending again by anyone's hand (a replay) starts
-- unleased, whatever lease it had, so no earlier attempt can record over
-- it. The WHEN keeps the daemon's own writes (pending to pending or to a
-- final status) from calling the function.
CREATE FUNCTION webhook_deliveries_release_lease() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.lease_token := NULL;
    NEW.leased_until := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER webhook_deliveries_replay_releases_lease
    BEFORE UPDATE OF status ON webhook_deliveries
    FOR EACH ROW
    WHEN (NEW.status = 'pending' AND OLD.status <> 'pending')
    EXECUTE FUNCTION webhook_deliveries_release_lease();
