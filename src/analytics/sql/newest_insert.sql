-- The server time of the newest insert the views have logged (0 if none).
SELECT toUInt32(max(inserted_at)) FROM {database}.webhooks_inserts
