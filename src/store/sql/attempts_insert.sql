INSERT INTO webhook_delivery_attempts
    (delivery_id, attempt, started_at, duration_ms, status_code, error_kind, error, response_snippet)
SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::int[], $5::int[],
                     $6::text[], $7::text[], $8::text[])
ON CONFLICT (delivery_id, attempt) DO NOTHING
