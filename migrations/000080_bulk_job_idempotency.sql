-- A client that retries an upload (a timeout, a lost answer) sends the same Idempotency-Key and
-- gets the job it already started instead of a second one.
ALTER TABLE bulk_jobs ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX bulk_jobs_idempotency ON bulk_jobs (community_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
