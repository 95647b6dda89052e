/**
 * Bulk import benchmark: `npm run bench:bulk -- --rows N [--update] [--modes import,reimport,update,dryrun,premium] [--users K]`.
 * `--users K` spreads the update and premium files over the first K users (row i names user i mod K),
 * the shape of a file with one row per trade or activity, where one user appears many times.
 * `dryrun` is a dry run of the import file (on a fresh community it would create every row);
 * `premium` credits every imported user some premium currency (one ledger row each).
 *
 * Starts a real `hearth serve` (on DATABASE_URL's server in a fresh database, else on PGlite in a
 * temporary folder), generates a CSV of N users (default fields + two custom fields), runs the whole
 * path through HTTP (upload, queue, worker, done), and prints one JSON line per run with rows,
 * seconds, rows/s, the server's peak RSS, and the seconds of a raw COPY of the same file into a
 * plain table with a unique index on (community, email), measured in the same run, and the ratio.
 * With HEARTH_PROFILE=1 each line also carries the worker's milliseconds per phase (phasesMs).
 */
import { spawn } from 'node:child_process'
import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  openAsBlob,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { PGlite } from '@electric-sql/pglite'
import pg from 'pg'
import copyStreams from 'pg-copy-streams'
import { createScratchDatabase, dropScratchDatabase } from './scratch-database.ts'

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    update: { type: 'boolean', default: false },
    modes: { type: 'string' },
    port: { type: 'string', default: '3917' },
    users: { type: 'string' },
  },
})
const rows = Number(values.rows)
const users = values.users ? Number(values.users) : rows
if (!(users >= 1 && users <= rows)) throw new Error('--users: a number from 1 to --rows')
const modes = (values.modes ?? (values.update ? 'import,update' : 'import,reimport,update')).split(',')
const databaseUrl = process.env.DATABASE_URL
const port = Number(values.port)
const base = `http://127.0.0.1:${port}`
const work = mkdtempSync(join(tmpdir(), 'hearth-bench-'))
const benchDb = `hearth_bench_${process.pid}`

const IMPORT_COLUMNS = [
  'email',
  'username',
  'first_name',
  'last_name',
  'display_name',
  'phone',
  'country',
  'join_date',
  'xp',
  'coins',
  'deposit',
  'tier',
]
const UPDATE_COLUMNS = ['email', 'xp_op', 'xp', 'coins_op', 'coins', 'deposit_op', 'deposit', 'tier']
const PREMIUM_COLUMNS = ['email', 'amount_op', 'amount', 'reason']

async function writeCsv(path: string, columns: string[], row: (i: number) => (string | number)[]) {
  const out = createWriteStream(path)
  const write = (s: string) =>
    out.write(s) ? undefined : new Promise<void>((r) => out.once('drain', () => r()))
  await write(`${columns.join(',')}\n`)
  let buf = ''
  for (let i = 0; i < rows; i++) {
    buf += `${row(i).join(',')}\n`
    if (buf.length > 1 << 20) {
      await write(buf)
      buf = ''
    }
  }
  await write(buf)
  await new Promise<void>((r) => out.end(() => r()))
}

const TIERS = ['bronze', 'silver', 'gold', '"platinum, plus"']
const importRow = (i: number) => [
  `user${i}@bench.example`,
  `user_${i}`,
  `First${i}`,
  `Last${i}`,
  `User ${i}`,
  `+4477009${String(i).padStart(5, '0')}`,
  ['GB', 'DE', 'SG', 'AE'][i % 4],
  `2025-${String((i % 12) + 1).padStart(2, '0')}-${String((i % 28) + 1).padStart(2, '0')}`,
  i % 1000,
  i % 500,
  (i % 10000) / 4,
  TIERS[i % 4],
]
const updateRow = (i: number) => [
  `user${i % users}@bench.example`,
  'add',
  5,
  // Spread over a few users (--users), a subtraction on every row would soon fail them all.
  users === rows ? 'subtract' : 'add',
  i % 500 === 0 ? 0 : 1,
  'add',
  10,
  TIERS[(i + 1) % 4],
]

const premiumRow = (i: number) => [`user${i % users}@bench.example`, 'add', (i % 100) + 1, 'bench credit']

/** What a mode uploads: its generated file (one per run, whatever the modes sharing it), the endpoint and the columns. */
interface JobSpec {
  file: string
  path: string
  columns: string[]
  row: (i: number) => (string | number)[]
}
const IMPORT_JOB: JobSpec = {
  file: 'import.csv',
  path: '/apis/v1/users/bulk-import',
  columns: IMPORT_COLUMNS,
  row: importRow,
}
const JOBS: Record<string, JobSpec> = {
  import: IMPORT_JOB,
  reimport: IMPORT_JOB,
  dryrun: IMPORT_JOB,
  update: { file: 'update.csv', path: '/apis/v1/users/bulk-update', columns: UPDATE_COLUMNS, row: updateRow },
  premium: {
    file: 'premium.csv',
    path: '/apis/v1/users/bulk-update/premium-currency',
    columns: PREMIUM_COLUMNS,
    row: premiumRow,
  },
}
for (const m of modes) {
  if (!(m in JOBS)) throw new Error(`--modes: ${m} is not one of ${Object.keys(JOBS).join(', ')}`)
}

/** The server runs as `npm start` runs it (package.json): a small young generation, see README "Memory". */
const SERVER_NODE_FLAGS = ['--max-semi-space-size=2']

function startServer(env: NodeJS.ProcessEnv) {
  // BENCH_SERVER_NODE_ARGS passes Node flags to the server only, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof";
  // BENCH_SERVER_STDOUT names a file for the server's standard output (what --trace-gc prints).
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const stdoutFile = process.env.BENCH_SERVER_STDOUT
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...nodeArgs, 'bin/hearth.mjs', 'serve'], {
    env,
    stdio: ['ignore', stdoutFile ? openSync(stdoutFile, 'w') : 'ignore', 'pipe'],
  })
  let log = ''
  child.stderr!.on('data', (d) => {
    log += d
  })
  const ready = new Promise<void>((resolve, reject) => {
    const check = setInterval(() => {
      if (log.includes('ready on')) {
        clearInterval(check)
        resolve()
      }
    }, 100)
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${log}`)))
  })
  return { child, ready, log: () => log }
}

/** CPU seconds (user + system) a process has used so far (Linux /proc/PID/stat, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** Peak resident memory of a process since the last reset, in MB (Linux VmHWM). */
function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Math.round(Number(m[1]) / 1024) : -1
}
function resetPeak(pid: number) {
  try {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
  } catch {}
}

async function cli(env: NodeJS.ProcessEnv, args: string[]): Promise<any> {
  const child = spawn(process.execPath, ['bin/hearth.mjs', ...args], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  child.stdout.on('data', (d) => {
    out += d
  })
  await new Promise((r) => child.once('exit', r))
  return JSON.parse(out)
}

async function api(path: string, key: string, init: RequestInit = {}) {
  const res = await fetch(`${base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, ...(init.headers ?? {}) },
  })
  const body: any = await res.json()
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`)
  return body
}

async function runJob(key: string, path: string, file: string, dryRun = false) {
  const form = new FormData()
  if (dryRun) form.append('dryRun', 'true')
  form.append('data', await openAsBlob(file), 'bench.csv')
  const started = performance.now()
  const queued = await api(path, key, { method: 'POST', body: form })
  const jobId = queued.data.jobId
  for (;;) {
    const { data: job } = await api(`/apis/v1/users/bulk-updates/${jobId}`, key)
    if (['completed', 'completed_with_errors', 'failed', 'cancelled'].includes(job.status)) {
      return { job, seconds: (performance.now() - started) / 1000 }
    }
    await new Promise((r) => setTimeout(r, 200))
  }
}

/**
 * The baseline: COPY of the same file into a plain table of the same columns with a unique
 * (community, email) index (not unique when the file names a user more than once).
 */
async function rawCopySeconds(
  file: string,
  columns: string[],
  serverUrl: string | undefined,
  unique: boolean,
): Promise<number> {
  const ddl = `CREATE TABLE bench_raw (community_id text NOT NULL DEFAULT 'c', ${columns.map((c) => `${c} text`).join(', ')});
    CREATE ${unique ? 'UNIQUE ' : ''}INDEX bench_raw_key ON bench_raw (community_id, email);`
  const copy = `COPY bench_raw (${columns.join(', ')}) FROM STDIN WITH (FORMAT csv, HEADER true)`
  if (serverUrl) {
    const client = new pg.Client({ connectionString: serverUrl })
    await client.connect()
    try {
      await client.query('DROP TABLE IF EXISTS bench_raw')
      await client.query(ddl)
      const started = performance.now()
      await pipeline(createReadStream(file), client.query(copyStreams.from(copy)))
      const seconds = (performance.now() - started) / 1000
      await client.query('DROP TABLE bench_raw')
      return seconds
    } finally {
      await client.end()
    }
  }
  const db = await PGlite.create(join(work, 'raw-pglite'))
  await db.exec(ddl)
  const blob = await openAsBlob(file)
  const started = performance.now()
  await db.query(copy.replace('FROM STDIN', "FROM '/dev/blob'"), [], { blob })
  const seconds = (performance.now() - started) / 1000
  await db.close()
  rmSync(join(work, 'raw-pglite'), { recursive: true, force: true })
  return seconds
}

/** The worker's time per phase for the last job, when run with HEARTH_PROFILE=1 (src/lib/phase-timer.ts). */
function lastPhases(log: string): {
  phasesMs?: Record<string, number>
  memoryPeakMB?: Record<string, number>
} {
  const line = log
    .split('\n')
    .filter((l) => l.includes('"phasesMs"'))
    .pop()
  if (!line) return {}
  const { phasesMs, memoryPeakMB } = JSON.parse(line)
  return { phasesMs, memoryPeakMB }
}

async function main() {
  // The import file always: the other modes work on the users it creates.
  for (const spec of new Set([IMPORT_JOB, ...modes.map((m) => JOBS[m])])) {
    await writeCsv(join(work, spec.file), spec.columns, spec.row)
  }

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PER_MINUTE: '100000',
  }
  if (databaseUrl) {
    env.DATABASE_URL = await createScratchDatabase(databaseUrl, benchDb)
  } else {
    env.DATA_DIR = join(work, 'data')
  }
  const server = startServer(env)
  await server.ready
  try {
    const community = await cli(env, ['community', 'create', '--name', 'Bench'])
    const { key } = await cli(env, ['keys', 'create', '--community', community.id])
    for (const [field, type] of [
      ['deposit', 'number'],
      ['tier', 'text'],
    ]) {
      await api(`/apis/v1/communities/${community.id}/user-fields`, key, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ field, name: field, type }),
      })
    }
    for (const mode of modes) {
      const { path, columns } = JOBS[mode]
      const file = join(work, JOBS[mode].file)
      resetPeak(server.child.pid!)
      const cpuBefore = cpuSeconds(server.child.pid!)
      const startedAtMs = Date.now()
      const { job, seconds } = await runJob(key, path, file, mode === 'dryrun')
      const peak = peakRssMb(server.child.pid!)
      const serverCpu = cpuSeconds(server.child.pid!) - cpuBefore
      // A file naming users many times (--users) cannot go under a unique index: same index, not unique.
      const copySeconds = await rawCopySeconds(
        file,
        columns,
        env.DATABASE_URL,
        JOBS[mode] === IMPORT_JOB || users === rows,
      )
      console.log(
        JSON.stringify({
          database: databaseUrl ? 'postgres' : 'pglite',
          mode,
          rows,
          ...(users < rows && mode !== 'import' && mode !== 'reimport' && mode !== 'dryrun' ? { users } : {}),
          fileMB: Math.round(statSync(file).size / 1e5) / 10,
          status: job.status,
          created: job.created,
          updated: job.updated,
          skipped: job.skipped,
          failed: job.failed,
          seconds: Math.round(seconds * 100) / 100,
          rowsPerSecond: Math.round(rows / seconds),
          peakRssMB: peak,
          // CPU the server process (Node, and PGlite inside it) used: the rest of the work is the database's.
          serverCpuSeconds: Math.round(serverCpu * 100) / 100,
          rawCopySeconds: Math.round(copySeconds * 100) / 100,
          ratioToCopy: Math.round((seconds / copySeconds) * 100) / 100,
          // Where the end-to-end time went: the upload (until the job row exists), the wait in the
          // queue, and the worker's run.
          uploadSeconds: Math.round((Date.parse(job.createdAt) - startedAtMs) / 10) / 100,
          queuedSeconds: Math.round((Date.parse(job.startedAt) - Date.parse(job.createdAt)) / 10) / 100,
          runSeconds: Math.round((Date.parse(job.finishedAt) - Date.parse(job.startedAt)) / 10) / 100,
          ...lastPhases(server.log()),
        }),
      )
    }
  } finally {
    server.child.kill('SIGTERM')
    await new Promise((r) => server.child.once('exit', r))
    if (databaseUrl) await dropScratchDatabase(databaseUrl, benchDb)
    rmSync(work, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
