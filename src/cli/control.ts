import { existsSync, unlinkSync } from 'node:fs'
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import type { AppDeps } from '../lib/deps.ts'
import { AppError } from '../lib/errors.ts'
import { type CommandArgs, commands, startImport } from './commands.ts'

/**
 * The running server's control socket (a Unix socket in DATA_DIR, reachable only by users who can
 * read the data folder): with PGlite only one process may open the database, so the CLI asks the
 * server to run its command.
 *
 * Two requests: `POST /` with `{command, args}` as JSON runs one of `commands`; `POST /import?args=…`
 * (sent with `Expect: 100-continue`) starts `hearth import`'s job from the file's bytes, which the
 * CLI streams as the request body once the server has checked the options and the community. The
 * server never opens a file the CLI names: the upload lives on the CLI's connection, and when the
 * CLI dies the connection closes, the upload breaks off as an HTTP upload does (its stored pieces
 * deleted, no job) and nothing is left reading the CLI's pipe.
 */
export const controlSocketPath = (dataDir: string) => join(dataDir, 'hearth.sock')

const IMPORT_PATH = '/import'

export async function startControlSocket(deps: AppDeps): Promise<Server> {
  const path = controlSocketPath(deps.config.dataDir)
  if (existsSync(path)) unlinkSync(path)
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    let status = 200
    let body: unknown
    try {
      body = { ok: true, result: await run(deps, req, res) }
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
    // A CLI that died has closed the connection: the answer goes nowhere, which is fine.
    if (!res.destroyed)
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  }
  // An upload takes as long as the CLI's pipe takes to write it: no 5-minute request timeout.
  const server = createServer({ requestTimeout: 0 }, handle)
  // With this listener Node leaves the `100 Continue` of an upload to `run`, sent once its options pass.
  server.on('checkContinue', handle)
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve))
  return server
}

async function run(deps: AppDeps, req: IncomingMessage, res: ServerResponse): Promise<unknown> {
  const url = new URL(req.url ?? '/', 'http://hearth')
  if (url.pathname === IMPORT_PATH) {
    const args = JSON.parse(url.searchParams.get('args') ?? '{}') as CommandArgs
    return startImport(deps, args, {
      fileName: typeof args.file === 'string' ? args.file : '',
      open: () => {
        if (req.headers.expect?.toLowerCase() === '100-continue') res.writeContinue()
        return req
      },
    })
  }
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  const { command, args } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    command: string
    args: CommandArgs
  }
  if (!Object.hasOwn(commands, command))
    throw new AppError(404, 'unknown_command', `Unknown command ${command}`)
  return commands[command](deps, args)
}

type Answer = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } }

/** Sends a command to a running server; resolves null when no server listens on the socket. */
export function sendControl(dataDir: string, command: string, args: CommandArgs): Promise<unknown | null> {
  const socketPath = controlSocketPath(dataDir)
  if (!existsSync(socketPath)) return Promise.resolve(null)
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path: '/', method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => readAnswer(res, resolve, reject),
    )
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(null)
      else reject(err)
    })
    req.end(JSON.stringify({ command, args }))
  })
}

/**
 * Starts `hearth import`'s job in a running server, streaming the file's bytes to it on this
 * connection; resolves with the queued job, or null when no server listens on the socket. `open`
 * is called only once the server has accepted the options (a refused import reads nothing from a
 * pipe); a file that cannot be read breaks the upload off, and so does this process's death.
 */
export function uploadToServer(
  dataDir: string,
  args: CommandArgs,
  open: () => Readable,
): Promise<unknown | null> {
  const socketPath = controlSocketPath(dataDir)
  if (!existsSync(socketPath)) return Promise.resolve(null)
  return new Promise((resolve, reject) => {
    let file: Readable | null = null
    let settled = false
    const settle = (fn: () => void) => {
      if (settled) return
      settled = true
      fn()
    }
    const req = request({
      socketPath,
      path: `${IMPORT_PATH}?args=${encodeURIComponent(JSON.stringify(args))}`,
      method: 'POST',
      headers: { 'content-type': 'text/csv', expect: '100-continue' },
      agent: false, // a connection of its own, closed with the upload
    })
    req.on('continue', () => {
      file = open()
      file.once('error', (err) => {
        settle(() => reject(err))
        req.destroy() // the server sees the upload break off and abandons it
      })
      file.pipe(req)
    })
    req.on('response', (res) =>
      readAnswer(
        res,
        (result) => settle(() => resolve(result)),
        (err) => settle(() => reject(err)),
        // A refusal may come before the whole file was sent (too large): stop sending it.
        () => {
          if (file && !file.readableEnded) {
            file.unpipe(req)
            file.destroy()
          }
          req.destroy()
        },
      ),
    )
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') settle(() => resolve(null))
      else settle(() => reject(new Error(`the Hearth server broke the upload off (${err.message})`)))
    })
    req.flushHeaders()
  })
}

function readAnswer(
  res: IncomingMessage,
  resolve: (result: unknown) => void,
  reject: (err: unknown) => void,
  done: () => void = () => {},
) {
  const chunks: Buffer[] = []
  res.on('data', (c) => chunks.push(c))
  res.on('error', reject)
  res.on('end', () => {
    done()
    try {
      const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Answer
      if (parsed.ok) resolve(parsed.result)
      else reject(new AppError(res.statusCode ?? 500, parsed.error.code, parsed.error.message))
    } catch (err) {
      reject(err)
    }
  })
}
