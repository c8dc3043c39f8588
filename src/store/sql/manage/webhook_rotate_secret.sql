-- Replaces the signing secret. With $3 > 0 seconds the old one keeps
-- signing beside the new one until then, so receivers can switch over.
UPDATE webhooks
SET previous_secret = CASE WHEN $3::float8 > 0 THEN secret END,
    previous_secret_expires_at =
        CASE WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3::float8) END,
    secret = $2
WHERE id = $1
RETURNING id, previous_secret_expires_at
