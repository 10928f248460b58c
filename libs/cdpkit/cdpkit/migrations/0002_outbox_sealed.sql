-- Outbox payloads may be sealed (AES-GCM, cdpkit.pii) by services whose announcements carry
-- personal data, so no plaintext PII waits in the table (or its WAL and backups) while NATS is down.
-- The relay opens sealed rows before publishing; rows of other services stay as they are.
ALTER TABLE outbox ADD COLUMN sealed boolean NOT NULL DEFAULT false;
