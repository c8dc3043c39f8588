-- Takes the retention lock on this session if no other session holds it.
SELECT pg_try_advisory_lock($1)
