import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from '../lib/config.ts'
import { acquireDataLock } from '../lib/data-lock.ts'
import { openConfiguredDatabase } from '../lib/db/database.ts'
import { migrate } from '../lib/db/migrate.ts'
import { closeRuntime, createRuntime } from '../runtime.ts'
import { serve } from '../server.ts'
import { type CommandArgs, commands, describeError } from './commands.ts'
import { sendControl } from './control.ts'
import { runImport } from './import.ts'

const USAGE = `hearth <command>

  serve [--no-worker] [--port N]     API, admin console and (unless --no-worker) the job worker
  worker                             the job worker only
  migrate                            apply database migrations
  community create --name NAME       prints {id, systemKey}
  keys create --community ID [--permissions a,b|all] [--name N]   prints {id, key}
  admin create --email E --password P --community ID              creates an owner
  import FILE|- --community ID [--update|--premium-currency] [--dry-run]   (- reads standard input)

Configuration comes from the environment (see README): DATABASE_URL, DATA_DIR, PORT, ...`

async function main(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      community: { type: 'string' },
      permissions: { type: 'string' },
      email: { type: 'string' },
      password: { type: 'string' },
      port: { type: 'string' },
      'no-worker': { type: 'boolean' },
      update: { type: 'boolean' },
      'premium-currency': { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const [cmd, sub] = positionals
  if (!cmd || values.help) {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  const env = { ...process.env, ...(values.port ? { PORT: values.port } : {}) }
  const config = loadConfig(env)

  switch (cmd) {
    case 'serve':
      await serve(config, { api: true, worker: !values['no-worker'] })
      return
    case 'worker':
      await serve(config, { api: false, worker: true })
      return
    case 'migrate': {
      const release = config.databaseUrl ? () => {} : acquireDataLock(config.dataDir)
      const database = await openConfiguredDatabase(config)
      const applied = await migrate(database.db)
      await database.close()
      release()
      print({ applied })
      return
    }
    case 'import':
      // `hearth import *.csv` would otherwise import the first file alone, silently.
      if (positionals.length > 2)
        throw new Error(`hearth import takes one FILE, not ${positionals.length - 1}: run it once per file`)
      await runImport(config, sub, values as CommandArgs)
      return
  }
  const name = `${cmd} ${sub ?? ''}`.trim()
  if (!commands[name]) throw new Error(`Unknown command "${name}". Run hearth --help.`)
  print(await runCommand(config, name, values as CommandArgs))
}

/** Runs an operator command in the server that holds the database, or opens it here when none does. */
export async function runCommand(config: ReturnType<typeof loadConfig>, name: string, args: CommandArgs) {
  if (!config.databaseUrl) {
    const remote = await sendControl(config.dataDir, name, args)
    if (remote !== null) return remote
  }
  const release = config.databaseUrl ? () => {} : acquireDataLock(config.dataDir)
  const deps = await createRuntime(config, { log: () => {} })
  try {
    return await commands[name](deps, args)
  } finally {
    await closeRuntime(deps).catch(() => {})
    release()
  }
}

const print = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`)

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`${err instanceof ConfigError ? err.message : describeError(err)}\n`)
  process.exit(1)
})
