import type { ColumnType, Generated } from 'kysely'

/** Kysely's view of the tables created by migrations/. Keep in step with the SQL. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
type Json = ColumnType<unknown, string | undefined, string>
type DefaultedJson = ColumnType<unknown, string | undefined, string>

export interface CommunitiesTable {
  id: string
  name: string
  description: Generated<string>
  appearance: DefaultedJson
  identifier_field: string | null
  allow_public_bulk_import: Generated<boolean>
  system_key_hash: string
  system_key_prefix: string
  owner_user_id: string | null
  created_at: Timestamp
  updated_at: Timestamp
}

export interface UsersTable {
  id: string
  community_id: string
  seq: ColumnType<number, never, never>
  email: string
  username: string | null
  first_name: string | null
  last_name: string | null
  display_name: string | null
  avatar: string | null
  phone: string | null
  country: string | null
  language: Generated<string>
  access_level: Generated<number>
  role: Generated<'member' | 'admin' | 'owner'>
  password_hash: string | null
  email_verified_at: Timestamp | null
  join_date: Timestamp
  last_login: Timestamp | null
  is_online: Generated<boolean>
  xp: Generated<number>
  coins: Generated<number>
  premium: Generated<number>
  custom_fields: DefaultedJson
  external_id: string | null
  referred_by: string | null
  total_messages: Generated<number>
  total_reactions: Generated<number>
  visit_count: Generated<number>
  reply_sent: Generated<number>
  time_spent: Generated<number>
  login_streak: Generated<number>
  deleted_at: Timestamp | null
  created_at: Timestamp
  updated_at: Timestamp
}

export interface ApiKeysTable {
  id: string
  community_id: string
  kind: 'community' | 'user'
  user_id: string | null
  name: string
  key_hash: string
  key_prefix: string
  permissions: ColumnType<string[], string[] | undefined, string[]>
  channel_ids: ColumnType<string[], string[] | undefined, string[]>
  expire_period: Generated<number>
  expire_date: Timestamp | null
  is_active: Generated<boolean>
  created_by: string | null
  last_used_at: Timestamp | null
  created_at: Timestamp
  updated_at: Timestamp
}

export interface AuthTokensTable {
  token_hash: string
  community_id: string
  user_id: string | null
  purpose: 'verify_email' | 'secure_auth'
  data: DefaultedJson
  expires_at: Timestamp
  used_at: Timestamp | null
  created_at: Timestamp
}

export interface UserFieldsTable {
  id: string
  community_id: string
  field: string
  name: string
  type: string
  description: Generated<string>
  required: Generated<boolean>
  default_value: Json | null
  options: Json | null
  creator_id: string | null
  created_at: Timestamp
  updated_at: Timestamp
}

export interface FieldHistoriesTable {
  id: string
  community_id: string
  user_id: string
  field_id: string | null
  field: string
  old_value: Json | null
  new_value: Json | null
  source: string
  changed_by: string | null
  created_at: Timestamp
}

export interface ApiLogTable {
  id: string
  community_id: string
  api_key_id: string | null
  kind: Generated<'request' | 'bulk_job'>
  method: string
  path: string
  status: number
  duration_ms: number
  request_id: string
  summary: DefaultedJson
  bulk_job_id: string | null
  created_at: Timestamp
}

export interface CurrencyLedgerTable {
  id: Generated<number>
  community_id: string
  user_id: string
  currency: 'xp' | 'coins' | 'premium'
  amount: number
  balance_after: number
  source: string
  reason: string | null
  idempotency_key: string
  created_at: Timestamp
}

export type BulkJobType = 'import' | 'update' | 'premium_currency'
export type BulkJobStatus =
  | 'queued'
  | 'validating'
  | 'processing'
  | 'completed'
  | 'completed_with_errors'
  | 'failed'
  | 'cancelled'

export interface BulkJobsTable {
  id: string
  community_id: string
  type: BulkJobType
  status: BulkJobStatus
  dry_run: Generated<boolean>
  file_name: string
  file_bytes: number
  file_chunks: number
  /** SHA-256 of the uploaded file, hex; null for jobs queued before it was recorded. */
  file_sha256: string | null
  total: Generated<number>
  processed: Generated<number>
  created: Generated<number>
  updated: Generated<number>
  skipped: Generated<number>
  failed: Generated<number>
  columns: DefaultedJson
  unknown_columns: DefaultedJson
  /** The PlanContext the job's columns were planned from (bulk.plan-guard.ts); null until planned. */
  plan_context: ColumnType<unknown, string | null | undefined, string | null>
  error_code: string | null
  error_message: string | null
  cancel_requested: Generated<boolean>
  lease_owner: string | null
  lease_until: Timestamp | null
  attempts: Generated<number>
  api_key_id: string | null
  created_by: string | null
  idempotency_key: string | null
  created_at: Timestamp
  started_at: Timestamp | null
  finished_at: Timestamp | null
  updated_at: Timestamp
}

export interface BulkFilesTable {
  community_id: string
  upload_id: string
  seq: number
  data: Buffer | Uint8Array
  created_at: Timestamp
}

export interface BulkJobChunksTable {
  community_id: string
  job_id: string
  chunk_no: number
  first_row: number
  lines: number[]
  keys: string[]
  actions: string
  /** When the chunk's transaction began, and when it booked its rows (just before its commit). */
  started_at: Generated<Date | null>
  booked_at: Generated<Date | null>
}

/** A user as a dry run left it (see migrations/000100). */
export interface BulkDryRunUsersTable {
  job_id: string
  user_id: string
  state: unknown
}

export interface BulkDryRunNamesTable {
  job_id: string
  name: string
  user_id: string
}

export interface BulkJobErrorsTable {
  community_id: string
  job_id: string
  row_no: number
  line: number
  key: string | null
  code: string
  field: string | null
  message: string
  cells: Json | null
}

export interface DB {
  hearth_settings: { key: string; value: string }
  communities: CommunitiesTable
  users: UsersTable
  api_keys: ApiKeysTable
  auth_tokens: AuthTokensTable
  user_fields: UserFieldsTable
  field_histories: FieldHistoriesTable
  api_log: ApiLogTable
  currency_ledger: CurrencyLedgerTable
  bulk_jobs: BulkJobsTable
  bulk_files: BulkFilesTable
  bulk_job_chunks: BulkJobChunksTable
  bulk_job_errors: BulkJobErrorsTable
  bulk_dry_run_users: BulkDryRunUsersTable
  bulk_dry_run_names: BulkDryRunNamesTable
}
