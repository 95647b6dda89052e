import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { inject } from 'vitest';
import { openDatabase } from '../../src/lib/db/database.js';
import { withDatabase } from './global-setup.js';
/** A database for one test file: a clone of the migrated template on PostgreSQL, else in-memory PGlite. */
export async function createTestDatabase() {
    const base = process.env.DATABASE_URL;
    const template = inject('templateDatabase');
    if (!base || !template) {
        const dump = inject('pgliteTemplate');
        const pgliteTemplate = dump ? new Blob([readFileSync(dump)]) : undefined;
        const database = await openDatabase({ dataDir: 'memory://', pgliteTemplate });
        return { database, url: undefined, drop: () => database.close() };
    }
    const name = `hearth_t_${inject('runId')}_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: base });
    await admin.connect();
    try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    }
    finally {
        await admin.end();
    }
    const url = withDatabase(base, name);
    const database = await openDatabase({ databaseUrl: url, poolSize: 8 });
    return {
        database,
        url,
        async drop() {
            await database.close();
            const c = new pg.Client({ connectionString: base });
            await c.connect();
            await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
            await c.end();
        },
    };
}
