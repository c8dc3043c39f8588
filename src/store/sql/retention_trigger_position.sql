-- Where the trigger engine has got to in ClickHouse's insert log (none
-- before its first tick).
SELECT position FROM webhook_cursors WHERE stream = 'triggers'
