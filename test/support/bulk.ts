import { expect } from 'vitest'
import { startTestApp, type TestApp } from './harness.ts'
import { multipart } from './multipart.ts'

/** The bulk endpoints, as the tests call them. */
export const IMPORT = '/apis/v1/users/bulk-import'
export const UPDATE = '/apis/v1/users/bulk-update'
export const PREMIUM = '/apis/v1/users/bulk-update/premium-currency'
export const JOBS = '/apis/v1/users/bulk-updates'

export type Upload = { file: string | Buffer; fields?: Record<string, string>; fileFirst?: boolean }

/** Uploads a CSV to one of the bulk endpoints and returns the raw response. */
export function upload(t: TestApp, path: string, auth: Record<string, string>, u: Upload) {
  const body = multipart({ file: u.file, fields: u.fields, fileFirst: u.fileFirst })
  return t.app.inject({
    method: 'POST',
    url: path,
    headers: { ...auth, ...body.headers },
    payload: body.payload,
  })
}

const TERMINAL = ['completed', 'completed_with_errors', 'failed', 'cancelled']

/** Polls the job status endpoint until the job ends. */
export async function waitForJob(
  t: TestApp,
  auth: Record<string, string>,
  jobId: string,
  timeoutMs = 60_000,
) {
  const until = Date.now() + timeoutMs
  for (;;) {
    const res = await t.app.inject({
      method: 'GET',
      url: `/apis/v1/users/bulk-updates/${jobId}`,
      headers: auth,
    })
    expect(res.statusCode).toBe(200)
    const job = res.json().data
    if (TERMINAL.includes(job.status)) return job
    if (Date.now() > until) throw new Error(`job ${jobId} still ${job.status}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Uploads and waits: the job as the status endpoint shows it at the end. */
export async function runJob(t: TestApp, path: string, auth: Record<string, string>, u: Upload) {
  const res = await upload(t, path, auth, u)
  expect(res.statusCode, res.body).toBe(200)
  return waitForJob(t, auth, res.json().data.jobId)
}

export interface FailedRow {
  row: number
  line: number
  key: string | null
  action: string
  error: { code: string; field: string | null; message: string }
}

/** A row of the details endpoint; only failed rows carry an error. */
export type DetailRow = Omit<FailedRow, 'error'> & { error: FailedRow['error'] | null }

/** Rows of a job from the details endpoint (`query`: its filters and paging). */
export async function detailRows(
  t: TestApp,
  auth: Record<string, string>,
  jobId: string,
  query: string,
): Promise<DetailRow[]> {
  const res = await t.app.inject({
    method: 'GET',
    url: `/apis/v1/users/bulk-updates/${jobId}/details?${query}`,
    headers: auth,
  })
  expect(res.statusCode, res.body).toBe(200)
  return res.json().data.rows
}

/** The failed rows of a job, from the details endpoint. */
export const failedRows = (t: TestApp, auth: Record<string, string>, jobId: string) =>
  detailRows(t, auth, jobId, 'status=failed') as Promise<FailedRow[]>

/**
 * Two apps with workers: one with the default chunks, and one whose chunks hold a single row, each
 * applied alone by the set-based SQL: the one-by-one reference a file's outcomes must equal.
 */
export function startPlayedAndOneByOne(): Promise<[TestApp, TestApp]> {
  return Promise.all([
    startTestApp({ worker: true }),
    startTestApp({ worker: true, env: { BULK_CHUNK_ROWS: '1' } }),
  ])
}
