-- The SHA-256 of a job's uploaded file: an upload retried with the same Idempotency-Key is the same
-- job only if it sends the same file (and asks for the same kind of run). NULL for older jobs.
ALTER TABLE bulk_jobs ADD COLUMN file_sha256 text;
