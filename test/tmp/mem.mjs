const r = (l) => {
  const m = process.memoryUsage()
  console.log(
    l,
    'rss',
    Math.round(m.rss / 1048576),
    'heap',
    Math.round(m.heapUsed / 1048576),
    'ext',
    Math.round(m.external / 1048576),
  )
}
r('node')
const { loadConfig } = await import('../../dist/lib/config.js')
const { openConfiguredDatabase } = await import('../../dist/lib/db/database.js')
const { createRuntime } = await import('../../dist/runtime.js')
r('imported runtime')
const { buildApp } = await import('../../dist/app.js')
r('imported app')
const config = loadConfig({ ...process.env, DATA_DIR: process.argv[2] })
const database = await openConfiguredDatabase(config)
r('db open')
const deps = await createRuntime(config, { database })
r('runtime (migrate+queue)')
const app = await buildApp(deps)
await app.ready()
r('app ready')
globalThis.gc?.()
r('after gc')
process.exit(0)
