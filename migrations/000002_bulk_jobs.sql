-- Bulk jobs: the uploaded file lives in the database (so any worker machine can run the job),
-- outcomes are kept per committed chunk, failed rows one by one.

CREATE TABLE bulk_jobs (
  id text PRIMARY KEY,
  community_id text NOT NULL REFERENCES communities(id),
  type text NOT NULL CHECK (type IN ('import', 'update', 'premium_currency')),
  status text NOT NULL CHECK (status IN ('queued', 'validating', 'processing', 'completed',
    'completed_with_errors', 'failed', 'cancelled')),
  dry_run boolean NOT NULL DEFAULT false,
  file_name text NOT NULL,
  file_bytes bigint NOT NULL,
  file_chunks integer NOT NULL,
  total integer NOT NULL DEFAULT 0,
  processed integer NOT NULL DEFAULT 0,
  created integer NOT NULL DEFAULT 0,
  updated integer NOT NULL DEFAULT 0,
  skipped integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  chunks_done integer NOT NULL DEFAULT 0,
  columns jsonb NOT NULL DEFAULT '[]'::jsonb,
  unknown_columns jsonb NOT NULL DEFAULT '[]'::jsonb,
  error_code text,
  error_message text,
  cancel_requested boolean NOT NULL DEFAULT false,
  lease_owner text,
  lease_until timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  api_key_id text,
  created_by text,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bulk_jobs_community ON bulk_jobs (community_id, created_at DESC, id DESC);
CREATE INDEX bulk_jobs_active ON bulk_jobs (status) WHERE status IN ('queued', 'validating', 'processing');

CREATE TABLE bulk_files (
  community_id text NOT NULL,
  upload_id text NOT NULL,
  seq integer NOT NULL,
  data bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (upload_id, seq)
);

-- One row per committed chunk: the outcome of each of its rows, in file order.
CREATE TABLE bulk_job_chunks (
  community_id text NOT NULL,
  job_id text NOT NULL REFERENCES bulk_jobs(id) ON DELETE CASCADE,
  chunk_no integer NOT NULL,
  first_row integer NOT NULL,
  lines integer[] NOT NULL,
  keys text[] NOT NULL,
  actions text NOT NULL,
  PRIMARY KEY (job_id, chunk_no)
);

CREATE TABLE bulk_job_errors (
  community_id text NOT NULL,
  job_id text NOT NULL REFERENCES bulk_jobs(id) ON DELETE CASCADE,
  row_no integer NOT NULL,
  line integer NOT NULL,
  key text,
  code text NOT NULL,
  field text,
  message text NOT NULL,
  cells jsonb,
  PRIMARY KEY (job_id, row_no)
);
