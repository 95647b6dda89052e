import type { PGlite } from '@electric-sql/pglite'
import {
  type CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
} from 'kysely'
import { isCopyFrom } from './copy.ts'
import type { Mutex } from './mutex.ts'

/**
 * Kysely over PGlite with one rule the published drivers miss: PGlite has a single connection,
 * so a connection is a lock on it. A transaction holds the lock from BEGIN to COMMIT/ROLLBACK,
 * and every other query (the queue's too) waits, instead of running inside someone else's transaction.
 */
export class PGliteDialect implements Dialect {
  constructor(
    private readonly pglite: PGlite,
    private readonly mutex: Mutex,
  ) {}
  createAdapter() {
    return new PostgresAdapter()
  }
  createDriver(): Driver {
    return new PGliteDriver(this.pglite, this.mutex)
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler()
  }
  createIntrospector(db: Kysely<any>) {
    return new PostgresIntrospector(db)
  }
}

class PGliteConnection implements DatabaseConnection {
  constructor(
    private readonly pglite: PGlite,
    readonly release: () => void,
  ) {}

  async executeQuery<R>(cq: CompiledQuery): Promise<QueryResult<R>> {
    if (isCopyFrom(cq)) {
      const sql = cq.sql.replace('FROM STDIN', "FROM '/dev/blob'")
      const res = await this.pglite.query(sql, [], { blob: new Blob([cq.copyFrom.csv]) })
      return { rows: [], numAffectedRows: BigInt(res.affectedRows ?? 0) }
    }
    if (cq.parameters.length === 0 && hasSeveralStatements(cq.sql)) {
      const results = await this.pglite.exec(cq.sql)
      const last = results[results.length - 1]
      return { rows: (last?.rows ?? []) as R[] }
    }
    const res = await this.pglite.query<R>(cq.sql, cq.parameters as unknown[])
    const affected = res.affectedRows
    return {
      rows: res.rows,
      ...(affected !== undefined && res.fields.length === 0 ? { numAffectedRows: BigInt(affected) } : {}),
    }
  }

  async *streamQuery<R>(cq: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    yield await this.executeQuery<R>(cq)
  }
}

function hasSeveralStatements(sql: string): boolean {
  const body = sql.trim().replace(/;+$/, '')
  return body.includes(';')
}

class PGliteDriver implements Driver {
  constructor(
    private readonly pglite: PGlite,
    private readonly mutex: Mutex,
  ) {}
  async init() {
    await this.pglite.waitReady
  }
  async acquireConnection(): Promise<DatabaseConnection> {
    // PGlite answers through microtasks only, so back-to-back queries (a bulk job in the worker)
    // would starve I/O on this event loop: HTTP in the same process stalls. Give I/O a turn first.
    await new Promise<void>((resolve) => setImmediate(resolve))
    const release = await this.mutex.lock()
    return new PGliteConnection(this.pglite, release)
  }
  async beginTransaction(conn: DatabaseConnection) {
    await this.pglite.exec('BEGIN')
    void conn
  }
  async commitTransaction() {
    await this.pglite.exec('COMMIT')
  }
  async rollbackTransaction() {
    await this.pglite.exec('ROLLBACK')
  }
  async savepoint(_c: DatabaseConnection, name: string) {
    await this.pglite.exec(`SAVEPOINT ${name}`)
  }
  async rollbackToSavepoint(_c: DatabaseConnection, name: string) {
    await this.pglite.exec(`ROLLBACK TO SAVEPOINT ${name}`)
  }
  async releaseSavepoint(_c: DatabaseConnection, name: string) {
    await this.pglite.exec(`RELEASE SAVEPOINT ${name}`)
  }
  async releaseConnection(conn: DatabaseConnection) {
    ;(conn as PGliteConnection).release()
  }
  async destroy() {
    const release = await this.mutex.lock()
    try {
      if (!this.pglite.closed) await this.pglite.close()
    } finally {
      release()
    }
  }
}
