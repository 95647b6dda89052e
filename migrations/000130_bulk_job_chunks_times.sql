-- When each chunk's transaction began (now()) and when it booked its rows (clock_timestamp(), just
-- before its commit): shows how a job's chunks ran, one after another or several at once.
-- Nullable, defaults set apart: no rewrite of the table (older chunks keep NULL).
ALTER TABLE bulk_job_chunks ADD COLUMN started_at timestamptz, ADD COLUMN booked_at timestamptz;
ALTER TABLE bulk_job_chunks ALTER COLUMN started_at SET DEFAULT now(),
  ALTER COLUMN booked_at SET DEFAULT clock_timestamp();
