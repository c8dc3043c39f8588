-- Replaces the Ed25519 signing key (v1a). With $3 > 0 seconds the old one,
-- if there was one, keeps signing beside the new one until then, so
-- receivers can switch over to the new public key.
UPDATE webhooks
SET previous_signing_key =
        CASE WHEN $3::float8 > 0 AND signing_key IS NOT NULL THEN signing_key END,
    previous_signing_key_expires_at =
        CASE WHEN $3::float8 > 0 AND signing_key IS NOT NULL
             THEN now() + make_interval(secs => $3::float8) END,
    signing_key = $2
WHERE id = $1
RETURNING id, previous_signing_key_expires_at
