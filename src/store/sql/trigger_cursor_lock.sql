-- Serialises trigger ticks (a second daemon waits here) and reads where
-- the last committed tick got to.
SELECT position FROM webhook_cursors WHERE stream = $1 FOR UPDATE
