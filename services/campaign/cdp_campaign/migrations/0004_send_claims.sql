-- The sender claims deliveries in a short committed transaction and calls the providers with no
-- transaction, lock or connection held: `claim` is the claiming sender's token, `claimed_until`
-- when another sender may take the row over (its sender died mid-send). A claimed message that
-- passed its checks holds `sent_at` (it counts toward frequency caps) until the provider answers.
ALTER TABLE deliveries
    ADD COLUMN claim         uuid,
    ADD COLUMN claimed_until timestamptz;
