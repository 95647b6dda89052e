import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { parse } from 'csv-parse/sync'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium } from '../support/browser.ts'
import { runJob } from '../support/bulk.ts'
import { slowChunks } from '../support/faults.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * The admin console in a real browser (Debian's chromium driven by playwright-core) against the
 * full app with its worker: sign in, upload a bulk CSV from the users page, watch the job's
 * progress bar fill on the API log page without a reload, save the failed rows.
 *
 * CI needs /usr/bin/chromium (`apt-get install -y chromium`); CHROMIUM_PATH overrides the path.
 */

const PASSWORD = 'correct horse battery'
const ROWS = 3000
// Small chunks applied one at a time, each slowed by CHUNK_SECONDS (see below): the 3000-row job
// commits its progress 60 times over 6 s or more, so the page's once-a-second refresh sees it part-way.
const CHUNK_ROWS = '50'
const CHUNK_SECONDS = 0.1
const BAD_ROWS = [
  { at: 7, cells: ['not-an-email', 'bad1', 'Bad', '1'], code: 'invalid_email' },
  { at: 420, cells: ['bad-xp@example.com', 'bad2', 'Bad', 'lots'], code: 'invalid_number' },
  { at: 1500, cells: ['', 'bad3', 'Bad', '3'], code: 'missing_key' },
  { at: 2222, cells: ['also@not@valid', 'bad4', 'Bad', '4'], code: 'invalid_email' },
  { at: 2999, cells: ['neg-xp@example.com', 'bad5', 'Bad', '1.5'], code: 'invalid_number' },
]

let t: TestApp
let base: string
let browser: Browser
let stopWorker: (() => Promise<void>) | null = null

beforeAll(async () => {
  // The worker starts once the API log page shows the job queued (see below), so the page never races the job.
  t = await startTestApp({ env: { BULK_CHUNK_ROWS: CHUNK_ROWS, BULK_PARALLEL_CHUNKS: '1' } })
  await t.app.listen({ port: 0, host: '127.0.0.1' })
  base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await stopWorker?.()
  await t?.close()
})

/**
 * Runs in every page before its own scripts: records each value any <progress> bar shows (with the
 * job of its card) in window.__progressSeen. Plain JS: the test project has no DOM types.
 */
const RECORD_PROGRESS = `
  window.__progressSeen = []
  const record = (el) => {
    const job = el.closest('[data-job-id]')?.dataset.jobId
    const value = el.getAttribute('value')
    const last = window.__progressSeen.findLast((s) => s.job === job)
    if (!last || last.value !== value) window.__progressSeen.push({ job, value })
  }
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'attributes' && r.target instanceof HTMLProgressElement) record(r.target)
      for (const n of r.addedNodes) {
        if (!(n instanceof Element)) continue
        if (n instanceof HTMLProgressElement) record(n)
        for (const p of n.querySelectorAll('progress')) record(p)
      }
    }
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['value'] })
`

/** A context whose pages record every value their <progress> bars show, from the first paint on. */
async function newContext(): Promise<BrowserContext> {
  const context = await browser.newContext({ acceptDownloads: true, baseURL: base })
  context.setDefaultTimeout(30_000)
  await context.addInitScript({ content: RECORD_PROGRESS })
  return context
}

function importCsv(): string {
  const lines = ['email,username,first_name,xp']
  const bad = new Map(BAD_ROWS.map((b) => [b.at, b]))
  for (let i = 1; i <= ROWS; i++) {
    const b = bad.get(i)
    lines.push(
      (b ? b.cells : [`member${i}@example.com`, `member_${i}`, `Member ${i}`, String(i % 50)]).join(','),
    )
  }
  return `${lines.join('\n')}\n`
}

async function signIn(page: Page, email: string) {
  await page.getByLabel('Email').fill(email)
  await page.getByLabel('Password').fill(PASSWORD)
  await page.getByRole('button', { name: 'Sign in' }).click()
}

describe('admin console in a browser', () => {
  it('is served at /admin, hidden from OpenAPI, with a strict CSP', async () => {
    const redirect = await t.app.inject({ method: 'GET', url: '/admin' })
    expect(redirect.statusCode).toBe(302)
    expect(redirect.headers.location).toBe('/admin/')
    for (const url of ['/admin/', '/admin/login.html', '/admin/users.html', '/admin/api-log.html']) {
      const res = await t.app.inject({ method: 'GET', url })
      expect(res.statusCode, url).toBe(200)
      expect(res.headers['content-type'], url).toMatch(/^text\/html/)
      expect(res.headers['content-security-policy'], url).toContain("script-src 'self'")
    }
    const js = await t.app.inject({ method: 'GET', url: '/admin/api-log.js' })
    expect(js.headers['content-type']).toMatch(/javascript/)
    expect((await t.app.inject({ method: 'GET', url: '/admin/nope.html' })).statusCode).toBe(404)
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json()
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/admin'))).toEqual([])
  })

  it('signs in, uploads a bulk CSV, watches its progress live and saves the failed rows', async () => {
    const c = await t.factory.community()
    const owner = await t.factory.user(c.id, { role: 'owner', password: PASSWORD })
    const context = await newContext()
    const page = await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', (e) => pageErrors.push(String(e)))
    page.on('console', (m) => {
      // Failed responses are checked one by one below.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text())
    })
    const failedResponses: string[] = []
    page.on('response', (r) => {
      if (r.status() >= 400)
        failedResponses.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`)
    })
    const requestUrls: string[] = []
    page.on('request', (r) => requestUrls.push(r.url()))

    try {
      // A protected page without a session goes to the sign-in page and comes back after it.
      await page.goto('/admin/api-log.html')
      await page.waitForURL(/\/admin\/login\.html\?next=api-log\.html$/)

      // A wrong password is reported in the alert region; nothing is stored.
      await page.getByLabel('Email').fill(owner.email)
      await page.getByLabel('Password').fill('wrong password!')
      await page.getByRole('button', { name: 'Sign in' }).click()
      await expect.poll(() => page.getByRole('alert').first().textContent()).toMatch(/\S/)
      expect(await page.evaluate('sessionStorage.length')).toBe(0)

      await page.goto('/admin/')
      await signIn(page, owner.email)
      await page.waitForURL(/\/admin\/users\.html$/)
      const token = await page.evaluate<string>(
        `JSON.parse(sessionStorage.getItem('hearth.admin.session') ?? '{}').token`,
      )
      expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/)
      await expect.poll(() => page.locator('[data-user]').textContent()).toBe(owner.email)

      // Search: the filter endpoint answers the session's token (a refusal would show among the
      // failed responses checked below).
      await page.getByLabel('Field').selectOption('email')
      await page.getByLabel('Equals').fill(owner.email)
      await page.getByRole('button', { name: 'Search' }).click()
      await page.locator('#users tbody tr').first().waitFor()
      expect(await page.locator('#users tbody tr').count()).toBe(1)
      expect(await page.locator('#users tbody tr td').first().textContent()).toBe(owner.email)

      // The CSV template of the chosen operation, fetched with the bearer token and saved.
      await page.getByLabel('Operation').selectOption('import')
      const [template] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Download the CSV template' }).click(),
      ])
      expect(template.suggestedFilename()).toBe('hearth-import-template.csv')
      const templateText = await readFile((await template.path())!, 'utf8')
      expect(templateText.split(/\r?\n/)[0]).toMatch(/^email,username,first_name,last_name,/)

      // Upload the import with a few bad rows.
      await page
        .getByLabel('CSV file', { exact: true })
        .setInputFiles({ name: 'members.csv', mimeType: 'text/csv', buffer: Buffer.from(importCsv()) })
      await page.getByRole('button', { name: 'Upload' }).click()
      const link = page.getByRole('link', { name: 'Watch its progress in the API log' })
      await link.waitFor()
      const jobId = (await page.locator('#job-id').textContent())!.trim()
      expect(jobId).toMatch(/^[0-9a-f]{24}$/)
      expect(await link.getAttribute('href')).toBe(`api-log.html#job=${jobId}`)
      // A real run clears the chosen file (a second click cannot send it twice); the operation stays.
      expect(await page.getByLabel('CSV file', { exact: true }).inputValue()).toBe('')
      expect(await page.getByLabel('Operation').inputValue()).toBe('import')

      await link.click()
      await page.waitForURL(new RegExp(`/admin/api-log\\.html#job=${jobId}$`))
      const navigations: string[] = []
      page.on('framenavigated', (f) => {
        if (f === page.mainFrame()) navigations.push(f.url())
      })
      await page.evaluate(`window.__hearthMarker = 'still here'`)

      // The job's row is highlighted, shown queued; then the worker starts and the bar fills to 100 % in place.
      const row = page.locator(`tr.highlight[data-job-id="${jobId}"]`)
      await row.waitFor()
      const bar = row.locator('progress')
      expect(await row.locator('[data-role="status"]').textContent()).toBe('queued')
      expect(await bar.getAttribute('value')).toBe('0')
      await slowChunks(t.deps.database.db, CHUNK_SECONDS)
      const { startWorker } = await import('../../src/worker.ts')
      stopWorker = await startWorker(t.deps, { log: () => {} })
      await expect.poll(() => bar.getAttribute('value'), { timeout: 60_000, interval: 100 }).toBe('100')
      await expect
        .poll(() => row.locator('[data-role="status"]').textContent(), { timeout: 10_000 })
        .toBe('completed with errors')

      const seen = await page.evaluate<number[]>(
        `window.__progressSeen.filter((s) => s.job === ${JSON.stringify(jobId)}).map((s) => Number(s.value))`,
      )
      // The bar went from 0 through some value part-way to 100, never back, in the same document.
      expect(seen.at(-1), `values seen: ${seen}`).toBe(100)
      expect(
        seen.slice(0, seen.indexOf(100)).some((v) => v > 0 && v < 100),
        `values seen: ${seen}`,
      ).toBe(true)
      expect(
        [...seen].sort((a, b) => a - b),
        'progress never goes back',
      ).toEqual(seen)
      expect(navigations, 'the page never reloaded').toEqual([])
      expect(await page.evaluate('window.__hearthMarker')).toBe('still here')

      const counts = await row.locator('[data-role="counts"]').textContent()
      expect(counts).toMatch(/^3,?000 of 3,?000 rows\b/)
      expect(counts).toMatch(new RegExp(`\\b${BAD_ROWS.length} failed\\b`))

      // The failed rows as CSV: a Blob saved through <a download>, with the bad rows and an error column.
      const downloadButton = row.getByRole('button', { name: /Download failed rows \(CSV\)/ })
      const [failed] = await Promise.all([page.waitForEvent('download'), downloadButton.click()])
      expect(failed.suggestedFilename()).toBe(`failed-rows-${jobId}.csv`)
      const csv: string[][] = parse(await readFile((await failed.path())!, 'utf8'), { bom: true })
      expect(csv[0]).toEqual(['email', 'username', 'first_name', 'xp', 'line', 'error'])
      expect(csv).toHaveLength(BAD_ROWS.length + 1)
      for (const [i, b] of BAD_ROWS.entries()) {
        const cells = csv[i + 1]
        expect(cells.slice(1, 3)).toEqual(b.cells.slice(1, 3))
        expect(cells[4]).toBe(String(b.at + 1))
        expect(cells[5]).toMatch(new RegExp(`^${b.code}: `))
      }

      // Still the same document, and the JWT never travelled in a URL.
      expect(navigations).toEqual([])
      expect(requestUrls.filter((u) => u.includes(token))).toEqual([])
      expect(pageErrors).toEqual([])
      expect(failedResponses).toEqual(['401 POST /apis/v1/auth/login']) // the wrong password

      // A job that fails as a whole (a column named twice) says why on its card, once the log is refreshed.
      const broken = await runJob(t, '/apis/v1/users/bulk-import', c.bearer, {
        file: 'email,email\nx@example.com,y@example.com\n',
      })
      expect(broken.status).toBe('failed')
      await page.getByRole('button', { name: 'Refresh' }).click()
      const brokenRow = page.locator(`tr[data-job-id="${broken.jobId}"]`)
      await brokenRow.waitFor()
      expect(await brokenRow.locator('[data-role="status"]').textContent()).toBe('failed')
      expect(await brokenRow.locator('.error').textContent()).toBe('The column "email" appears twice')
      expect(await brokenRow.locator('[data-role="counts"]').textContent()).toBe('0 of 1 row · 0 failed')
      expect(await brokenRow.getByRole('button', { name: /Download failed rows/ }).count()).toBe(0)

      // A dry run's card says what the file would do, not what it did.
      const dry = await runJob(t, '/apis/v1/users/bulk-import', c.bearer, {
        file: 'email,xp\nnew-one@example.com,5\nnot-an-email,1\n',
        fields: { dryRun: 'true' },
      })
      expect(dry.status).toBe('completed_with_errors')
      await page.getByRole('button', { name: 'Refresh' }).click()
      const dryRow = page.locator(`tr[data-job-id="${dry.jobId}"]`)
      await dryRow.waitFor()
      expect(await dryRow.locator('[data-role="type"]').textContent()).toBe('Import (dry run)')
      expect(await dryRow.locator('[data-role="counts"]').textContent()).toBe(
        '2 of 2 rows · 1 would be created · 1 would fail',
      )

      // Sign out clears the session and protected pages send the browser back to sign in.
      await page.getByRole('button', { name: 'Sign out' }).click()
      await page.waitForURL(/\/admin\/login\.html$/)
      expect(await page.evaluate(`sessionStorage.getItem('hearth.admin.session')`)).toBeNull()
      await page.goto('/admin/users.html')
      await page.waitForURL(/\/admin\/login\.html\?next=users\.html$/)
    } finally {
      await context.close()
    }
  }, 180_000)
})
