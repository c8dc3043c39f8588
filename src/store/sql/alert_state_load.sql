SELECT webhook_id, event_type, last_fired_at FROM webhook_alert_state
