-- Leadership among daemons sharing this database: one row per leased role
-- (the trigger engine's is `triggers`). A daemon leads while its token is
-- in the row and `lease_until` is ahead of Postgres's clock; it renews the
-- lease well before then, and every tick it commits checks (and locks) the
-- row in the same transaction, so a daemon whose lease ran out can write
-- nothing. A standby takes the row over only once `lease_until` has passed.

CREATE TABLE webhook_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    token text NOT NULL,
    lease_until timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL,

    CONSTRAINT webhook_leases_name_format CHECK (name ~ '^[a-z0-9_.:-]{1,200}$'),
    CONSTRAINT webhook_leases_holder_length CHECK (length(holder) BETWEEN 1 AND 200),
    CONSTRAINT webhook_leases_token_length CHECK (length(token) BETWEEN 1 AND 200),
    CONSTRAINT webhook_leases_finite CHECK (
        isfinite(lease_until) AND isfinite(acquired_at) AND isfinite(renewed_at)
    )
);
