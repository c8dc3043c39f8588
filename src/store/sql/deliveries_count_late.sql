-- Counts the requests of fenced outcomes (see deliveries_record.sql): a
-- late attempt was still sent, so the delivery's attempt count goes up by
-- one and the attempt keeps a number of its own in the log. Nothing else
-- about the delivery changes. An attempt already logged (the same start
-- time: a batch written again after a commit whose answer was lost) is not
-- counted twice. Returns the deliveries counted and their new count.
UPDATE webhook_deliveries AS d
SET attempts = d.attempts + 1
FROM unnest($1::text[], $2::timestamptz[]) AS o(id, started_at)
WHERE d.id = o.id
  AND NOT EXISTS (SELECT 1 FROM webhook_delivery_attempts a
                  WHERE a.delivery_id = d.id AND a.started_at = o.started_at)
RETURNING d.id::text, d.attempts
