import { type Kysely, sql } from 'kysely'

/**
 * Database errors on demand, for tests of what is not the rows' fault: a BEFORE trigger on `table`
 * that raises `errcode` on `event` while `condition` holds. A sequence counts the calls, as it does
 * not roll back with the failed transaction.
 */
export function databaseFaults(db: () => Kysely<any>, table = 'users') {
  async function failWhen(condition: string, errcode: string, event: 'INSERT' | 'UPDATE' = 'UPDATE') {
    await sql
      .raw(`CREATE OR REPLACE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF ${condition} THEN
            RAISE EXCEPTION 'simulated failure' USING ERRCODE = '${errcode}';
          END IF;
          RETURN NEW;
        END $$`)
      .execute(db())
    await sql
      .raw(`CREATE TRIGGER test_fault BEFORE ${event} ON ${table} FOR EACH ROW EXECUTE FUNCTION test_fault()`)
      .execute(db())
  }
  return {
    failWhen,
    /** The first `times` rows written by `event` fail with `errcode`. */
    async failFirst(times: number, errcode: string, event: 'INSERT' | 'UPDATE' = 'UPDATE') {
      await sql`CREATE SEQUENCE IF NOT EXISTS test_fault_calls`.execute(db())
      await sql`SELECT setval('test_fault_calls', 1, false)`.execute(db())
      await failWhen(`nextval('test_fault_calls') <= ${times}`, errcode, event)
    },
    async stop() {
      await sql.raw(`DROP TRIGGER IF EXISTS test_fault ON ${table}`).execute(db())
    },
  }
}

/**
 * Each committed chunk of a bulk job takes `seconds` longer (a trigger on its booking), so a test
 * can act between chunks while rows remain.
 */
export async function slowChunks(db: Kysely<any>, seconds: number) {
  await sql
    .raw(`CREATE OR REPLACE FUNCTION test_slow_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep(${seconds}); RETURN NEW; END $$`)
    .execute(db)
  await sql`CREATE TRIGGER test_slow_chunk AFTER INSERT ON bulk_job_chunks
    FOR EACH ROW EXECUTE FUNCTION test_slow_chunk()`.execute(db)
}

/** Waits until a job has processed at least `rows` rows. */
export async function untilProcessed(db: Kysely<any>, jobId: string, rows: number) {
  for (;;) {
    const j = await db
      .selectFrom('bulk_jobs')
      .select('processed')
      .where('id', '=', jobId)
      .executeTakeFirstOrThrow()
    if (j.processed >= rows) return
    await new Promise((r) => setTimeout(r, 10))
  }
}
