import { resolve } from 'node:path'
import { z } from 'zod'

/** Every environment variable Hearth reads, each with what it does. Nothing else reads process.env. */
const envSchema = z.object({
  /** PostgreSQL connection string; when unset Hearth runs on embedded PGlite. */
  DATABASE_URL: z.string().url().optional(),
  /** Folder for PGlite data and local uploads (default ./.data). */
  DATA_DIR: z.string().min(1).default('.data'),
  /**
   * PGlite's shared buffers (PostgreSQL's shared_buffers). They sit in the WebAssembly memory,
   * which is allocated whole at start and never shrinks; the OS file cache still holds the data.
   */
  PGLITE_SHARED_BUFFERS: z
    .string()
    .regex(/^\d+(kB|MB|GB)$/)
    .default('32MB'),
  /**
   * PGlite has no autovacuum: every this many seconds the server VACUUMs and ANALYZEs the tables
   * that PostgreSQL's autovacuum thresholds say are due (0 = never).
   */
  PGLITE_HOUSEKEEPING_SECONDS: z.coerce.number().int().min(0).default(60),
  /** HTTP port of `hearth serve`. */
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  /** Address to bind. */
  HOST: z.string().min(1).default('0.0.0.0'),
  /** Secret that signs session JWTs and encrypts stored secrets; generated and kept in DATA_DIR when unset. */
  HEARTH_SECRET: z.string().min(32).optional(),
  /** Public base URL used in links (verification mails, Secure Auth login URLs). */
  PUBLIC_URL: z.string().url().optional(),
  /** Log level: fatal, error, warn, info, debug, trace or silent. */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** SMTP URL (smtp://user:pass@host:port); when unset, mails are written to the log. */
  SMTP_URL: z.string().url().optional(),
  /** Sender address for mails. */
  MAIL_FROM: z.string().min(3).default('Hearth <no-reply@hearth.local>'),
  /**
   * Days the API log entries and finished bulk jobs (with their per-row outcomes) are kept; the
   * worker deletes older ones every hour. 0 keeps them forever.
   */
  API_LOG_RETENTION_DAYS: z.coerce.number().int().min(0).default(90),
  /** Requests per minute allowed per API key (or per IP without a key). */
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().positive().default(600),
  /** Largest bulk CSV upload, in bytes. */
  BULK_MAX_FILE_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(512 * 1024 * 1024),
  /** Most data rows in one bulk CSV. */
  BULK_MAX_ROWS: z.coerce.number().int().positive().default(2_000_000),
  /** Most bulk jobs queued or running at once per community. */
  BULK_MAX_ACTIVE_JOBS: z.coerce.number().int().positive().default(3),
  /** Rows applied per committed chunk of a bulk job (default: 10000 on PostgreSQL, 5000 on PGlite). */
  BULK_CHUNK_ROWS: z.coerce.number().int().positive().optional(),
  /**
   * A chunk also ends once its rows hold this many characters, so a file of very long rows (up to
   * 1 MiB each) keeps the same bound on memory as one of short rows.
   */
  BULK_CHUNK_CHARS: z.coerce
    .number()
    .int()
    .positive()
    .default(8 * 1024 * 1024),
  /**
   * Chunks of one bulk job applied at once on PostgreSQL, each in its own transaction (chunks in
   * flight never share a user key or email). PGlite has one connection, so 1 there.
   */
  BULK_PARALLEL_CHUNKS: z.coerce.number().int().min(1).max(16).default(2),
  /** Seconds a worker holds a bulk job between chunk commits before another worker may take it over. */
  BULK_LEASE_SECONDS: z.coerce.number().int().positive().default(60),
  /** Concurrent bulk jobs one worker process runs. */
  WORKER_CONCURRENCY: z.coerce.number().int().positive().default(2),
})

export type Config = Readonly<{
  databaseUrl: string | undefined
  dataDir: string
  pgliteSharedBuffers: string
  pgliteHousekeepingSeconds: number
  port: number
  host: string
  secret: string | undefined
  publicUrl: string | undefined
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL']
  smtpUrl: string | undefined
  mailFrom: string
  rateLimitPerMinute: number
  apiLogRetentionDays: number
  bulk: Readonly<{
    maxFileBytes: number
    maxRows: number
    maxActiveJobs: number
    chunkRows: number | undefined
    chunkChars: number
    parallelChunks: number
    leaseSeconds: number
  }>
  workerConcurrency: number
}>

export class ConfigError extends Error {}

/** Parses the environment once; throws a ConfigError listing every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''))
  const parsed = envSchema.safeParse(cleaned)
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`)
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`)
  }
  const e = parsed.data
  return Object.freeze({
    databaseUrl: e.DATABASE_URL,
    dataDir: resolve(e.DATA_DIR),
    pgliteSharedBuffers: e.PGLITE_SHARED_BUFFERS,
    pgliteHousekeepingSeconds: e.PGLITE_HOUSEKEEPING_SECONDS,
    port: e.PORT,
    host: e.HOST,
    secret: e.HEARTH_SECRET,
    publicUrl: e.PUBLIC_URL,
    logLevel: e.LOG_LEVEL,
    smtpUrl: e.SMTP_URL,
    mailFrom: e.MAIL_FROM,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    apiLogRetentionDays: e.API_LOG_RETENTION_DAYS,
    bulk: Object.freeze({
      maxFileBytes: e.BULK_MAX_FILE_BYTES,
      maxRows: e.BULK_MAX_ROWS,
      maxActiveJobs: e.BULK_MAX_ACTIVE_JOBS,
      chunkRows: e.BULK_CHUNK_ROWS,
      chunkChars: e.BULK_CHUNK_CHARS,
      parallelChunks: e.BULK_PARALLEL_CHUNKS,
      leaseSeconds: e.BULK_LEASE_SECONDS,
    }),
    workerConcurrency: e.WORKER_CONCURRENCY,
  })
}
