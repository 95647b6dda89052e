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
import type pg from 'pg'
import copyStreams from 'pg-copy-streams'
import { isCopyFrom } from './copy.ts'

/** Kysely over a `pg` pool, with COPY FROM STDIN on the transaction's own client (see copy.ts). */
export class PgDialect implements Dialect {
  constructor(private readonly pool: pg.Pool) {}
  createAdapter() {
    return new PostgresAdapter()
  }
  createDriver(): Driver {
    return new PgDriver(this.pool)
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler()
  }
  createIntrospector(db: Kysely<any>) {
    return new PostgresIntrospector(db)
  }
}

class PgConnection implements DatabaseConnection {
  constructor(readonly client: pg.PoolClient) {}

  async executeQuery<R>(cq: CompiledQuery): Promise<QueryResult<R>> {
    if (isCopyFrom(cq)) {
      const stream = this.client.query(copyStreams.from(cq.sql))
      await new Promise<void>((resolve, reject) => {
        stream.on('error', reject)
        stream.on('finish', resolve)
        stream.end(cq.copyFrom.csv)
      })
      return { rows: [], numAffectedRows: BigInt(stream.rowCount ?? 0) }
    }
    const res = await this.client.query<R & object>({ text: cq.sql, values: cq.parameters as unknown[] })
    const command = res.command
    const isWrite =
      command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE'
    return {
      rows: res.rows ?? [],
      ...(isWrite && res.rowCount !== null ? { numAffectedRows: BigInt(res.rowCount) } : {}),
    }
  }

  async *streamQuery<R>(cq: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    yield await this.executeQuery<R>(cq)
  }
}

class PgDriver implements Driver {
  constructor(private readonly pool: pg.Pool) {}
  async init() {}
  async acquireConnection(): Promise<DatabaseConnection> {
    return new PgConnection(await this.pool.connect())
  }
  async beginTransaction(conn: DatabaseConnection) {
    await (conn as PgConnection).client.query('BEGIN')
  }
  async commitTransaction(conn: DatabaseConnection) {
    await (conn as PgConnection).client.query('COMMIT')
  }
  async rollbackTransaction(conn: DatabaseConnection) {
    await (conn as PgConnection).client.query('ROLLBACK')
  }
  async savepoint(conn: DatabaseConnection, name: string) {
    await (conn as PgConnection).client.query(`SAVEPOINT ${name}`)
  }
  async rollbackToSavepoint(conn: DatabaseConnection, name: string) {
    await (conn as PgConnection).client.query(`ROLLBACK TO SAVEPOINT ${name}`)
  }
  async releaseSavepoint(conn: DatabaseConnection, name: string) {
    await (conn as PgConnection).client.query(`RELEASE SAVEPOINT ${name}`)
  }
  async releaseConnection(conn: DatabaseConnection) {
    ;(conn as PgConnection).client.release()
  }
  async destroy() {
    await this.pool.end()
  }
}
