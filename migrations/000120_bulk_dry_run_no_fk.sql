-- The dry run's kept users and names are written for every user a chunk changes (a dry run of a
-- 100k-row import keeps 100k states): the foreign keys to bulk_jobs cost one lookup per row and
-- protect nothing, since a job drops its rows when it finishes (forgetDryRun) and retention deletes
-- only finished jobs.
ALTER TABLE bulk_dry_run_users DROP CONSTRAINT bulk_dry_run_users_job_id_fkey;
ALTER TABLE bulk_dry_run_names DROP CONSTRAINT bulk_dry_run_names_job_id_fkey;
