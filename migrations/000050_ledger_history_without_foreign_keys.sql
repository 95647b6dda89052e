-- Ledger and field-history rows arrive by the million from bulk jobs. Their foreign keys cost a
-- per-row trigger (a lookup and a row lock on the parent) that doubled the time of a bulk insert;
-- both tables are written only by code that has just read or written the user in the same
-- transaction, so the reference is guaranteed where it is made.
ALTER TABLE currency_ledger DROP CONSTRAINT IF EXISTS currency_ledger_user_id_fkey;
ALTER TABLE currency_ledger DROP CONSTRAINT IF EXISTS currency_ledger_community_id_fkey;
ALTER TABLE field_histories DROP CONSTRAINT IF EXISTS field_histories_user_id_fkey;
ALTER TABLE field_histories DROP CONSTRAINT IF EXISTS field_histories_community_id_fkey;
