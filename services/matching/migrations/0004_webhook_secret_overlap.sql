-- After a rotation the previous secret keeps signing next to the new one for a day, so that a receiver
-- can switch without refusing deliveries in between (Standard Webhooks: several signatures per header).
ALTER TABLE webhook_endpoints
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_expires_at timestamptz;
