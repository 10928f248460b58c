-- When the sender holding a delivery started handing it to its provider (an SMTP message's
-- content after the server's 354, a webhook's POST); cleared with its outcome. A delivery taken
-- over from a dead sender with this set may already be at the provider: it is sent again with the
-- same idempotency key and counted as a re-send (cdp_campaign_deliveries_resent_total).
ALTER TABLE deliveries ADD COLUMN transmitted_at timestamptz;
