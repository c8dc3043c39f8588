-- `uninstall`: the publications of logical replication mode.
DROP PUBLICATION IF EXISTS plausible_webhooks, plausible_webhooks_outbox
