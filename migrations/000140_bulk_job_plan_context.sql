-- The field definitions and identifier field a job's column plan was made from, stored when the
-- job starts: a job resumed after a crash plans its columns the same way, and each chunk checks
-- that the definitions it writes still hold. NULL until the job has read its header.
ALTER TABLE bulk_jobs ADD COLUMN plan_context jsonb;
