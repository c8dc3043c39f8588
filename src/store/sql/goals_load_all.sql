-- The goals of every site that has an enabled webhook.
SELECT g.id, g.site_id, g.event_name, g.page_path, g.display_name, g.scroll_threshold,
       g.custom_props, g.currency::text AS currency
FROM goals g
WHERE g.site_id IN (SELECT site_id FROM webhooks WHERE enabled)
ORDER BY g.site_id, g.id
