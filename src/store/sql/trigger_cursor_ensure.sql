INSERT INTO webhook_cursors (stream, position) VALUES ($1, $2)
ON CONFLICT (stream) DO NOTHING
