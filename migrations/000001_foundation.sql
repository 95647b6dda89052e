-- Communities (servers), their members, keys, fields, field histories and the API log.
-- Every table that belongs to a community carries community_id, and its indexes lead with it.

-- Instance-wide settings, e.g. the generated signing secret, shared by every process on this database.
CREATE TABLE hearth_settings (
  key text PRIMARY KEY,
  value text NOT NULL
);

CREATE TABLE communities (
  id text PRIMARY KEY,
  name text NOT NULL,
  description text NOT NULL DEFAULT '',
  appearance jsonb NOT NULL DEFAULT '{}'::jsonb,
  identifier_field text,
  allow_public_bulk_import boolean NOT NULL DEFAULT false,
  system_key_hash text NOT NULL UNIQUE,
  system_key_prefix text NOT NULL,
  owner_user_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id text PRIMARY KEY,
  community_id text NOT NULL REFERENCES communities(id),
  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  email text NOT NULL,
  username text,
  first_name text,
  last_name text,
  display_name text,
  avatar text,
  phone text,
  country text,
  language text NOT NULL DEFAULT 'English',
  access_level integer NOT NULL DEFAULT 1,
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin', 'owner')),
  password_hash text,
  email_verified_at timestamptz,
  join_date timestamptz NOT NULL DEFAULT now(),
  last_login timestamptz,
  is_online boolean NOT NULL DEFAULT false,
  xp bigint NOT NULL DEFAULT 0,
  coins bigint NOT NULL DEFAULT 0,
  premium bigint NOT NULL DEFAULT 0,
  custom_fields jsonb NOT NULL DEFAULT '{}'::jsonb,
  external_id text,
  referred_by text,
  total_messages integer NOT NULL DEFAULT 0,
  total_reactions integer NOT NULL DEFAULT 0,
  visit_count integer NOT NULL DEFAULT 0,
  reply_sent integer NOT NULL DEFAULT 0,
  time_spent integer NOT NULL DEFAULT 0,
  login_streak integer NOT NULL DEFAULT 0,
  deleted_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- email is stored lower-cased; one account per email per community.
CREATE UNIQUE INDEX users_community_email ON users (community_id, email);
CREATE UNIQUE INDEX users_community_external_id ON users (community_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX users_community_username ON users (community_id, username);
CREATE INDEX users_community_created ON users (community_id, created_at, id);

CREATE TABLE api_keys (
  id text PRIMARY KEY,
  community_id text NOT NULL REFERENCES communities(id),
  kind text NOT NULL CHECK (kind IN ('community', 'user')),
  user_id text REFERENCES users(id),
  name text NOT NULL,
  key_hash text NOT NULL UNIQUE,
  key_prefix text NOT NULL,
  permissions text[] NOT NULL DEFAULT '{}',
  channel_ids text[] NOT NULL DEFAULT '{}',
  expire_period integer NOT NULL DEFAULT 0,
  expire_date timestamptz,
  is_active boolean NOT NULL DEFAULT true,
  created_by text,
  last_used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_community ON api_keys (community_id, kind, created_at);

CREATE TABLE auth_tokens (
  token_hash text PRIMARY KEY,
  community_id text NOT NULL REFERENCES communities(id),
  user_id text REFERENCES users(id),
  purpose text NOT NULL CHECK (purpose IN ('verify_email', 'secure_auth')),
  data jsonb NOT NULL DEFAULT '{}'::jsonb,
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_tokens_community ON auth_tokens (community_id, purpose, created_at);

CREATE TABLE user_fields (
  id text PRIMARY KEY,
  community_id text NOT NULL REFERENCES communities(id),
  field text NOT NULL,
  name text NOT NULL,
  type text NOT NULL,
  description text NOT NULL DEFAULT '',
  required boolean NOT NULL DEFAULT false,
  default_value jsonb,
  options jsonb,
  creator_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX user_fields_community_field ON user_fields (community_id, field);

CREATE TABLE field_histories (
  id text PRIMARY KEY,
  community_id text NOT NULL REFERENCES communities(id),
  user_id text NOT NULL REFERENCES users(id),
  field_id text,
  field text NOT NULL,
  old_value jsonb,
  new_value jsonb,
  source text NOT NULL,
  changed_by text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX field_histories_user ON field_histories (community_id, user_id, field, created_at);
CREATE INDEX field_histories_field ON field_histories (community_id, field, created_at);
CREATE INDEX field_histories_created ON field_histories (community_id, created_at, id);

CREATE TABLE api_log (
  id text PRIMARY KEY,
  community_id text NOT NULL REFERENCES communities(id),
  api_key_id text,
  kind text NOT NULL DEFAULT 'request' CHECK (kind IN ('request', 'bulk_job')),
  method text NOT NULL,
  path text NOT NULL,
  status integer NOT NULL,
  duration_ms integer NOT NULL,
  request_id text NOT NULL,
  summary jsonb NOT NULL DEFAULT '{}'::jsonb,
  bulk_job_id text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_log_community_created ON api_log (community_id, created_at DESC, id DESC);

-- XP, coins and premium currency change only through these rows; users.xp|coins|premium move in the same transaction.
CREATE TABLE currency_ledger (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  community_id text NOT NULL REFERENCES communities(id),
  user_id text NOT NULL REFERENCES users(id),
  currency text NOT NULL CHECK (currency IN ('xp', 'coins', 'premium')),
  amount bigint NOT NULL,
  balance_after bigint NOT NULL,
  source text NOT NULL,
  reason text,
  idempotency_key text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX currency_ledger_idempotency ON currency_ledger (community_id, idempotency_key);
CREATE INDEX currency_ledger_user ON currency_ledger (community_id, user_id, currency, id);
