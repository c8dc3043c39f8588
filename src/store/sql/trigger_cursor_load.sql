SELECT position FROM webhook_cursors WHERE stream = $1
