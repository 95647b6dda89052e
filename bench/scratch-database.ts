import pg from 'pg'

/**
 * A throwaway database on the server of `serverUrl` for one benchmark run: created fresh (any
 * leftover of the same name dropped first), and dropped at the end.
 */
export async function createScratchDatabase(serverUrl: string, name: string): Promise<string> {
  await admin(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, `CREATE DATABASE ${name}`)
  const u = new URL(serverUrl)
  u.pathname = `/${name}`
  return u.toString()
}

export function dropScratchDatabase(serverUrl: string, name: string) {
  return admin(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
}

async function admin(serverUrl: string, ...statements: string[]) {
  const client = new pg.Client({ connectionString: serverUrl })
  await client.connect()
  try {
    for (const s of statements) await client.query(s)
  } finally {
    await client.end()
  }
}
