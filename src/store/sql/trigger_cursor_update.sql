UPDATE webhook_cursors SET position = $2, updated_at = now() WHERE stream = $1
