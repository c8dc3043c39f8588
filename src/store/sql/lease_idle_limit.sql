-- A fenced commit's transaction may idle at most $1 (for example '600ms')
-- between statements before Postgres ends the session (this transaction
-- only).
SELECT set_config('idle_in_transaction_session_timeout', $1, true)
