-- A site by id or by domain (the CLI's --site DOMAIN|ID).
SELECT id, domain
FROM sites
WHERE id = $1::bigint OR domain = $2::text
ORDER BY id = $1::bigint DESC
LIMIT 1
