-- How many of the transactions $1 (32-bit ids, as a replication stream's
-- Begin names them) a snapshot taken now still sees as running. A
-- transaction's commit reaches the stream a moment before it is visible
-- to other sessions; its rows are re-read only once this is 0.
SELECT count(*)::bigint
FROM pg_snapshot_xip(pg_current_snapshot()) AS x
WHERE (x::text::bigint % 4294967296) = ANY ($1::bigint[])
