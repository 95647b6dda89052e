import { PGlite } from '@electric-sql/pglite'

const db = await PGlite.create(process.argv[2])
const r = await db.query(
  `select name, setting, unit from pg_settings where name in ('full_page_writes','wal_level','max_wal_size','checkpoint_timeout','fsync','synchronous_commit','wal_buffers','shared_buffers','work_mem','maintenance_work_mem','temp_buffers','wal_compression','max_wal_senders','commit_delay','wal_writer_delay','wal_sync_method','effective_io_concurrency')`,
)
console.table(r.rows)
await db.close()
