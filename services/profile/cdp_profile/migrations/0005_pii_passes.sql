-- When the rules of what is personal information change (rules.PII_RULES_VERSION), profiles
-- saved under the old rules may hold personal traits in plaintext: a background pass per rules
-- version seals them, going through the profiles in (workspace, person) order (resumable).
CREATE TABLE pii_passes (
    rules_version   integer     PRIMARY KEY,
    after_workspace text        NOT NULL DEFAULT '',
    after_person    uuid        NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    finished_at     timestamptz
);
