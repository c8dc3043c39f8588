-- The columns of Plausible's `sites` and `goals` in the daemon's schema,
-- with their types.
SELECT table_name::text, column_name::text, data_type::text
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name IN ('sites', 'goals')
