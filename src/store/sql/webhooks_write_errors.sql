-- Writes the daemon's verdict on each row ($2: NULL for a valid row), but
-- only where the row is still the version the daemon judged ($3) and the
-- value changes, so that a concurrent edit is never overwritten and the
-- write cannot loop through NOTIFY.
UPDATE webhooks AS w
SET last_error = v.error
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS v(id, error, judged_at)
WHERE w.id = v.id
  AND w.updated_at = v.judged_at
  AND w.last_error IS DISTINCT FROM v.error
