-- Taking a lease waits at most this long for the row (this transaction
-- only).
SET LOCAL lock_timeout = '500ms'
