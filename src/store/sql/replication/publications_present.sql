-- Which of the daemon's publications exist.
SELECT pubname::text FROM pg_publication
WHERE pubname IN ('plausible_webhooks', 'plausible_webhooks_outbox')
ORDER BY 1
