-- What a webhook's receiver needs beyond the standard envelope: a message
-- format (Slack and Discord incoming webhooks), an Ed25519 signing key for
-- Standard Webhooks `v1a` signatures, fixed headers of its own, and a rate
-- limit. Every column has a default that keeps today's behaviour, so rows
-- written before this migration deliver exactly as they did. See
-- docs/schema.md.

ALTER TABLE webhooks
    -- `standard` (the Standard Webhooks envelope), `slack` or `discord`.
    ADD COLUMN format text NOT NULL DEFAULT 'standard',
    -- Which signatures `webhook-signature` carries: `v1` (HMAC-SHA256 with
    -- `secret`), `v1a` (Ed25519 with `signing_key`), or both.
    ADD COLUMN signatures text[] NOT NULL DEFAULT ARRAY['v1']::text[],
    -- The Ed25519 key, `whsk_` followed by the base64 of the 64-byte key
    -- pair (seed then public key) or of the 32-byte seed. The receiver holds
    -- the public key, `whpk_` followed by its base64.
    ADD COLUMN signing_key text,
    -- While a signing key is rotated, the previous one keeps signing until
    -- it expires, as `previous_secret` does for `secret`.
    ADD COLUMN previous_signing_key text,
    ADD COLUMN previous_signing_key_expires_at timestamptz,
    -- Fixed headers sent with every request: a JSON object of at most 20
    -- string values. The daemon's own headers cannot be set here.
    ADD COLUMN headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- At most this many requests a minute to this webhook; NULL is no limit.
    ADD COLUMN max_per_minute integer;

-- The names the daemon sets itself (or that HTTP reserves for the
-- connection), which a webhook's headers may not name. The daemon's own
-- list (`registry::headers::RESERVED`) is tested against this one.
CREATE FUNCTION plausible_webhooks_header_reserved(name text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT lower(name) LIKE 'webhook-%'
        OR lower(name) IN ('content-type', 'content-length', 'host', 'user-agent',
                           'connection', 'keep-alive', 'proxy-connection', 'te',
                           'trailer', 'transfer-encoding', 'upgrade', 'expect')
$$;

-- A header object as the daemon sends it: an object of at most 20 entries,
-- each name an HTTP token of at most 100 characters and not reserved, each
-- value a string of at most 4096 visible ASCII characters, spaces or tabs.
CREATE FUNCTION plausible_webhooks_headers_valid(headers jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(headers) IS DISTINCT FROM 'object' THEN false
        ELSE (SELECT count(*) <= 20
                     AND coalesce(bool_and(
                         jsonb_typeof(h.value) = 'string'
                         AND h.key ~ '^[-!#$%&''*+.^_`|~0-9A-Za-z]{1,100}$'
                         AND NOT plausible_webhooks_header_reserved(h.key)
                         AND length(h.value #>> '{}') <= 4096
                         AND (h.value #>> '{}') ~ '^[\x20-\x7e\t]*$'
                     ), true)
              FROM jsonb_each(headers) AS h)
    END
$$;

ALTER TABLE webhooks
    ADD CONSTRAINT webhooks_format_known CHECK (format IN ('standard', 'slack', 'discord')),
    ADD CONSTRAINT webhooks_signatures_known CHECK (
        array_ndims(signatures) = 1
        AND cardinality(signatures) BETWEEN 1 AND 2
        AND signatures <@ ARRAY['v1', 'v1a']::text[]
        AND array_position(signatures, NULL) IS NULL
    ),
    ADD CONSTRAINT webhooks_signing_key_format CHECK (
        signing_key IS NULL OR
        CASE WHEN signing_key ~ '^whsk_[A-Za-z0-9+/]+={0,2}$'
                  AND length(signing_key) % 4 = 1
             THEN octet_length(decode(substr(signing_key, 6), 'base64')) IN (32, 64)
             ELSE false END
    ),
    ADD CONSTRAINT webhooks_previous_signing_key_format CHECK (
        previous_signing_key IS NULL OR
        CASE WHEN previous_signing_key ~ '^whsk_[A-Za-z0-9+/]+={0,2}$'
                  AND length(previous_signing_key) % 4 = 1
             THEN octet_length(decode(substr(previous_signing_key, 6), 'base64')) IN (32, 64)
             ELSE false END
    ),
    ADD CONSTRAINT webhooks_previous_signing_key_expiry CHECK (
        (previous_signing_key IS NULL) = (previous_signing_key_expires_at IS NULL)
    ),
    ADD CONSTRAINT webhooks_previous_signing_key_expires_at_finite CHECK (
        isfinite(previous_signing_key_expires_at)
        AND previous_signing_key_expires_at < '10000-01-01 00:00:00+00'),
    ADD CONSTRAINT webhooks_v1a_needs_signing_key CHECK (
        signing_key IS NOT NULL OR NOT signatures @> ARRAY['v1a']::text[]
    ),
    ADD CONSTRAINT webhooks_headers_valid CHECK (plausible_webhooks_headers_valid(headers)),
    ADD CONSTRAINT webhooks_max_per_minute CHECK (max_per_minute BETWEEN 1 AND 6000);
