-- Removes a webhook; its deliveries, attempts and state go with it
-- (ON DELETE CASCADE).
DELETE FROM webhooks
WHERE id = $1
RETURNING id
