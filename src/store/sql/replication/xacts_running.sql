-- How many of the transactions $1 (32-bit ids, as a replication stream's
-- Begin names them) a snapshot taken now does not see as committed. A
-- transaction's commit reaches the stream a moment before it is visible
-- to other sessions; its rows are re-read only once this is 0.
--
-- A snapshot lists as running only the transactions below its xmax; one
-- at or above xmax (the newest, still committing) is running too, which
-- pg_visible_in_snapshot judges. It needs the 64-bit id: each 32-bit id
-- is taken as the one nearest the snapshot's xmax (a transaction that is
-- committing is within 2^31 of it).
SELECT count(*)::bigint
FROM (SELECT pg_current_snapshot() AS s) AS snap,
     LATERAL (SELECT pg_snapshot_xmax(snap.s)::text::bigint AS xmax) AS b,
     LATERAL unnest($1::bigint[]) AS x(id),
     LATERAL (SELECT ((x.id - b.xmax % 4294967296) % 4294967296 + 4294967296) % 4294967296 AS d) AS m,
     LATERAL (SELECT b.xmax + CASE WHEN m.d >= 2147483648 THEN m.d - 4294967296 ELSE m.d END AS full_id) AS f
WHERE f.full_id >= 3
  AND NOT pg_visible_in_snapshot(f.full_id::text::xid8, snap.s)
