import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const HEARTH = fileURLToPath(new URL('../../bin/hearth.mjs', import.meta.url))

/** A real `hearth serve` in its own process, for tests that kill it. */
export interface ChildServer {
  child: ChildProcess
  base: string
  log(): string
}

/**
 * Starts `hearth serve` (or `args`, e.g. ['worker']) in `cwd`; resolves once it is ready. `base` is
 * its HTTP address, empty for a role that serves no HTTP.
 */
export async function startChildServer(
  env: Record<string, string>,
  opts: { args?: string[]; cwd?: string } = {},
): Promise<ChildServer> {
  const child = spawn(process.execPath, [HEARTH, ...(opts.args ?? ['serve'])], {
    cwd: opts.cwd,
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: '100000',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  child.stderr!.on('data', (d) => {
    log += d
  })
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /ready(?: on (http:\/\/[\d.]+:\d+))? \(/.exec(log)
      if (m) {
        clearInterval(timer)
        resolve(m[1] ?? '')
      }
    }, 50)
    child.once('exit', (code) => {
      clearInterval(timer)
      reject(new Error(`hearth serve exited with ${code}: ${log}`))
    })
  })
  return { child, base, log: () => log }
}

export async function stopChild(s: ChildServer, signal: NodeJS.Signals = 'SIGTERM') {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return
  const exited = new Promise((r) => s.child.once('exit', r))
  s.child.kill(signal)
  await exited
}
