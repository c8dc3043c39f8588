-- Drops one whole partition of a view table: the table is bound as an
-- identifier, the partition as its value (toYYYYMM or toYYYYMMDD digits).
-- check-binds: webhooks_inserts, 20000101
ALTER TABLE {database}.? DROP PARTITION ?
