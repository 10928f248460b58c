-- The workspace currency as profile announced it with the person's last snapshot: orders.sum and
-- orders.avg add only orders in it (profile's computed.total_spent_minor does the same).
ALTER TABLE persons ADD COLUMN currency text NOT NULL DEFAULT 'CNY';
-- Order currencies are written from now on ('' = not announced: counted as the workspace's).
ALTER TABLE person_orders ALTER COLUMN currency SET DEFAULT '';
