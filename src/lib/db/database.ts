import { spawn } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { Kysely } from 'kysely'
import pg from 'pg'
import type { Config } from '../config.ts'
import { Mutex } from './mutex.ts'
import { PgDialect } from './pg-dialect.ts'
import { PGliteDialect } from './pglite-dialect.ts'
import type { DB } from './schema.ts'

export type DatabaseKind = 'pglite' | 'postgres'

/** The database handle every module receives: one Kysely instance over PGlite or PostgreSQL. */
export interface Database {
  readonly kind: DatabaseKind
  readonly db: Kysely<DB>
  close(): Promise<void>
  /** PGlite only: the data folder as a tarball (tests use it as a template). */
  dump?(): Promise<Blob>
}

export type Tx = Kysely<DB>

// int8 and numeric arrive as strings from PostgreSQL; Hearth's counters and balances fit in a double.
const INT8 = 20
const NUMERIC = 1700
const toNumber = (v: string) => (v === null ? v : Number(v))

export interface OpenOptions {
  /** PostgreSQL connection string; when absent, PGlite in `dataDir` (or in memory when dataDir is 'memory://'). */
  databaseUrl?: string
  dataDir?: string
  /** PGlite only: shared_buffers, e.g. '32MB' (PostgreSQL's default of 128MB when absent). */
  sharedBuffers?: string
  poolSize?: number
  /** PGlite only: start from this dumped data folder (tests start from a migrated template). */
  pgliteTemplate?: Blob
}

export async function openDatabase(opts: OpenOptions): Promise<Database> {
  if (opts.databaseUrl) {
    const pool = new pg.Pool({
      connectionString: opts.databaseUrl,
      max: opts.poolSize ?? 10,
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === INT8 || oid === NUMERIC
            ? toNumber
            : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
      },
    })
    pool.on('error', () => {}) // an idle client dropped by the server; the next checkout reconnects
    const db = new Kysely<DB>({ dialect: new PgDialect(pool) })
    return { kind: 'postgres', db, close: () => db.destroy() }
  }
  const dir = opts.dataDir ?? '.data'
  let location = dir
  if (!dir.startsWith('memory://')) {
    location = join(dir, 'pglite')
    mkdirSync(location, { recursive: true })
    if (!opts.pgliteTemplate) await initializeApart(location)
  }
  const pglite = await PGlite.create(location, {
    parsers: { [INT8]: toNumber, [NUMERIC]: toNumber },
    ...(opts.sharedBuffers
      ? { startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${opts.sharedBuffers}`] }
      : {}),
    ...(opts.pgliteTemplate ? { loadDataDir: opts.pgliteTemplate } : {}),
  })
  const db = new Kysely<DB>({ dialect: new PGliteDialect(pglite, new Mutex()) })
  return { kind: 'pglite', db, close: () => db.destroy(), dump: () => pglite.dumpDataDir('none') }
}

/** The database the configuration names: DATABASE_URL's server, else PGlite in DATA_DIR. */
export function openConfiguredDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'pgliteSharedBuffers'>,
) {
  return openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    sharedBuffers: config.pgliteSharedBuffers,
  })
}

/**
 * Creates a new PGlite data folder in a short-lived child process. initdb grows the WebAssembly
 * memory of the instance that runs it to about 700 MB, and WebAssembly memory never shrinks: run
 * in this process, a first start would hold that for its whole life (a restart holds far less).
 */
async function initializeApart(location: string) {
  if (existsSync(join(location, 'PG_VERSION'))) return
  const pglite = import.meta.resolve('@electric-sql/pglite')
  const code = `const { PGlite } = await import(${JSON.stringify(pglite)})
    const db = await PGlite.create(process.argv[1])
    await db.close()`
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, location], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', resolve)
  })
  if (exitCode !== 0) throw new Error(`PGlite initdb failed (${exitCode}): ${stderr.slice(-2000)}`)
}
