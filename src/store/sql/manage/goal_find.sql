-- A site's goal by id or by display name (the CLI's --goal NAME|ID).
SELECT id
FROM goals
WHERE site_id = $1::bigint AND (id = $2::bigint OR display_name = $3::text)
ORDER BY id = $2::bigint DESC
LIMIT 1
