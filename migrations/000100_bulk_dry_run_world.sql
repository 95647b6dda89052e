-- A dry run applies each chunk under a savepoint and undoes it. Later chunks must still see what
-- earlier ones would have done (a user "created" in chunk 1 is updated, not created again, in
-- chunk 7; a balance spent in chunk 2 is gone in chunk 9). The users a dry run touched are kept
-- here as it left them, replayed under the savepoint of each later chunk that names them, and
-- dropped when the job ends.
CREATE TABLE bulk_dry_run_users (
  job_id text NOT NULL REFERENCES bulk_jobs(id) ON DELETE CASCADE,
  user_id text NOT NULL,
  state jsonb NOT NULL,
  PRIMARY KEY (job_id, user_id)
);
-- Every name a later row may use for such a user (id, numeric id, email, external id, and the email
-- it has outside the dry run): a chunk finds the users it must replay by the names its rows use.
CREATE TABLE bulk_dry_run_names (
  job_id text NOT NULL REFERENCES bulk_jobs(id) ON DELETE CASCADE,
  name text NOT NULL,
  user_id text NOT NULL,
  PRIMARY KEY (job_id, name, user_id)
);
