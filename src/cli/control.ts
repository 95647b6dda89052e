import { existsSync, unlinkSync } from 'node:fs'
import { createServer, request, type Server } from 'node:http'
import { join } from 'node:path'
import type { AppDeps } from '../lib/deps.ts'
import { AppError } from '../lib/errors.ts'
import { type CommandArgs, commands } from './commands.ts'

/**
 * The running server's control socket (a Unix socket in DATA_DIR, reachable only by users who can
 * read the data folder): with PGlite only one process may open the database, so the CLI asks the
 * server to run its command.
 */
export const controlSocketPath = (dataDir: string) => join(dataDir, 'hearth.sock')

export async function startControlSocket(deps: AppDeps): Promise<Server> {
  const path = controlSocketPath(deps.config.dataDir)
  if (existsSync(path)) unlinkSync(path)
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    let status = 200
    let body: unknown
    try {
      const { command, args } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        command: string
        args: CommandArgs
      }
      const run = commands[command]
      if (!run) throw new AppError(404, 'unknown_command', `Unknown command ${command}`)
      body = { ok: true, result: await run(deps, args) }
    } catch (err) {
      status = err instanceof AppError ? err.status : 500
      body = {
        ok: false,
        error:
          err instanceof AppError
            ? { code: err.code, message: err.message }
            : { code: 'internal_error', message: String(err) },
      }
    }
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve))
  return server
}

/** Sends a command to a running server; resolves null when no server listens on the socket. */
export function sendControl(dataDir: string, command: string, args: CommandArgs): Promise<unknown | null> {
  const socketPath = controlSocketPath(dataDir)
  if (!existsSync(socketPath)) return Promise.resolve(null)
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path: '/', method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => {
          const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as
            | { ok: true; result: unknown }
            | { ok: false; error: { code: string; message: string } }
          if (parsed.ok) resolve(parsed.result)
          else reject(new AppError(res.statusCode ?? 500, parsed.error.code, parsed.error.message))
        })
      },
    )
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(null)
      else reject(err)
    })
    req.end(JSON.stringify({ command, args }))
  })
}
