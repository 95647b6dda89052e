-- A job's committed chunks are the rows of bulk_job_chunks (resume reads their row ranges); the
-- counter beside them was written on every chunk and read by nothing.
ALTER TABLE bulk_jobs DROP COLUMN chunks_done;
