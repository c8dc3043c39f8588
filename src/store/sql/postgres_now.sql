-- Postgres's clock, as the delivery scheduler measures its offset from the
-- host's: the time of the statement itself, not of its transaction.
SELECT clock_timestamp()
