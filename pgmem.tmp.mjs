import { PGlite } from '@electric-sql/pglite'
const mb = (n) => Math.round(n / 1048576)
const r = () => { const m = process.memoryUsage(); return { rss: mb(m.rss), heap: mb(m.heapUsed), ext: mb(m.external), ab: mb(m.arrayBuffers) } }
console.log('before', r())
const dir = process.argv[2]
const sb = process.argv[3]
const db = await PGlite.create(dir, sb ? { startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${sb}`] } : {})
const mod = db.mod ?? db.Module
console.log('keys', Object.keys(db).filter(k=>!k.startsWith('#')).slice(0,40))
console.log('after create', r(), 'wasm', mod?.HEAP8 ? mb(mod.HEAP8.length) : '?')
await db.query('select 1')
console.log((await db.query("show shared_buffers")).rows)
console.log('after q', r(), 'wasm', mod?.HEAP8 ? mb(mod.HEAP8.length) : '?')
