-- Neither the sender nor the scheduler holds a transaction, lock or connection across a call to
-- profile, segment or a provider: they claim rows in a short committed transaction. `claim` is the
-- claiming run's token, `claimed_until` when another replica may take the row over (the claimant
-- died or is stuck).
--
-- Deliveries: a claimed message that passed its checks holds `sent_at` (it counts toward
-- frequency caps) until the provider answers.
ALTER TABLE deliveries
    ADD COLUMN claim         uuid,
    ADD COLUMN claimed_until timestamptz;

-- Instances: claimed for one scheduler run; `wake_at` stays (they are still due while they run).
ALTER TABLE instances
    ADD COLUMN claim         uuid,
    ADD COLUMN claimed_until timestamptz;
CREATE INDEX instances_claim ON instances (claim) WHERE claim IS NOT NULL;
