import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase } from '../../src/lib/db/database.js';
import { migrate } from '../../src/lib/db/migrate.js';
import { createQueue } from '../../src/lib/queue.js';
/**
 * On PostgreSQL (DATABASE_URL set) a template database is migrated once; each test file then
 * clones it into a database of its own and drops that when done. On PGlite each file opens its own
 * in-memory database.
 */
export default async function setup(project) {
    const runId = `${process.pid}_${Date.now().toString(36)}`;
    project.provide('runId', runId);
    const url = process.env.DATABASE_URL;
    if (!url) {
        project.provide('templateDatabase', null);
        const database = await openDatabase({ dataDir: 'memory://' });
        await migrate(database.db);
        const queue = createQueue(database);
        await queue.start();
        await queue.stop();
        const path = join(tmpdir(), `hearth-pglite-template-${runId}.tar`);
        writeFileSync(path, Buffer.from(await (await database.dump()).arrayBuffer()));
        await database.close();
        project.provide('pgliteTemplate', path);
        return () => rmSync(path, { force: true });
    }
    project.provide('pgliteTemplate', null);
    const template = `hearth_tpl_${runId}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${template}`);
    const database = await openDatabase({ databaseUrl: withDatabase(url, template), poolSize: 2 });
    await migrate(database.db);
    const queue = createQueue(database);
    await queue.start();
    await queue.stop();
    await database.close();
    project.provide('templateDatabase', template);
    return async () => {
        const { rows } = await admin.query('SELECT datname FROM pg_database WHERE datname LIKE $1', [`hearth_%${runId}%`]);
        for (const r of rows)
            await admin.query(`DROP DATABASE IF EXISTS ${r.datname} WITH (FORCE)`);
        await admin.end();
    };
}
export function withDatabase(url, name) {
    const u = new URL(url);
    u.pathname = `/${name}`;
    return u.toString();
}
