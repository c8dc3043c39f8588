-- The throttles of the given (deleted) goals. A webhook's throttles go with
-- it (ON DELETE CASCADE).
DELETE FROM webhook_goal_throttle WHERE goal_id = ANY($1::bigint[])
