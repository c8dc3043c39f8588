-- The goals of the given sites ($1) and of the sites that the given goal ids
-- ($2) now belong to.
SELECT g.id, g.site_id, g.event_name, g.page_path, g.display_name, g.scroll_threshold,
       g.custom_props, g.currency::text AS currency
FROM goals g
WHERE g.site_id = ANY($1::bigint[])
   OR g.site_id IN (SELECT site_id FROM goals WHERE id = ANY($2::bigint[]))
ORDER BY g.site_id, g.id
