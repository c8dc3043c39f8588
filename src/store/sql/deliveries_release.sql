UPDATE webhook_deliveries SET leased_until = NULL WHERE id = ANY($1::text[]) AND status = 'pending'
