import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_ROOT } from '../../src/modules/admin/admin.routes.ts'
import { launchChromium } from '../support/browser.ts'
import { IMPORT, runJob } from '../support/bulk.ts'
import { slowChunks } from '../support/faults.ts'
import { startTestApp, type TestApp } from '../support/harness.ts'

/**
 * Accessibility of the admin console in a real browser (Debian's chromium through playwright-core,
 * as in admin.test.ts), against the full app and its worker.
 *
 * 1. axe-core runs on every page in the states a person meets: the sign-in page (pristine, then
 *    with each kind of error), the users page (pristine, with search results, a refused upload,
 *    the job link, several result pages) and the API log (a queued job card and request rows, a
 *    poll that fails, a running job, a finished job with failed rows, a failed job), at desktop
 *    width and at 320 px. Rules: every rule tagged wcag2a, wcag2aa, wcag21a, wcag21aa, wcag22aa
 *    or best-practice; a violation of any impact fails the test.
 *    axe's source is evaluated in the page through the DevTools protocol: the pages keep their
 *    real, strict CSP (no bypassCSP), and nothing is fetched from outside 127.0.0.1.
 * 2. What axe cannot see: the Tab order reaches every control (and nothing hidden), each stop shows
 *    a focus ring of at least 3:1 against what surrounds it, pressing a busy button never drops
 *    focus to <body>, sign-in, upload (file chosen with Space), search, paging and downloads all work
 *    from the keyboard, errors mark the field at fault (aria-invalid, aria-describedby, focus) and
 *    come in a role=alert, the progress bars have names, a running job is announced when it starts
 *    and ends but not on each progress tick (nor is a failing poll's error re-announced each
 *    second), control edges have 3:1 contrast, and nothing animates (prefers-reduced-motion:
 *    reduce is emulated, and the stylesheet has no transition or animation outside a
 *    no-preference query).
 */

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']
const PASSWORD = 'correct horse battery'
// 250 rows in 16-row chunks, each slowed by CHUNK_SECONDS once the job should be watched running:
// the job runs for several seconds, so the page's once-a-second refresh sees it part-way.
const ROWS = 250
const CHUNK_ROWS = '16'
const CHUNK_SECONDS = 0.25
const BAD_ROWS = new Map([
  [7, 'not-an-email,bad1,Bad,1'],
  [120, 'bad-xp@example.com,bad2,Bad,lots'],
])
/** More request rows than one page of the API log (50), so "Load older entries" shows. */
const EXTRA_REQUESTS = 55

let t: TestApp
let base: string
let browser: Browser
let stopWorker: (() => Promise<void>) | null = null
let community: Awaited<ReturnType<TestApp['factory']['community']>>
let owner: Awaited<ReturnType<TestApp['factory']['user']>>
/** The one signed-in tab the tests walk through in order: sign in, users, API log, users again. */
let context: BrowserContext
let page: Page
const pageErrors: string[] = []
const foreignRequests: string[] = []
let jobId = ''

beforeAll(async () => {
  // The worker starts once the API log shows the uploaded job queued (see below).
  t = await startTestApp({ env: { BULK_CHUNK_ROWS: CHUNK_ROWS, BULK_PARALLEL_CHUNKS: '1' } })
  await t.app.listen({ port: 0, host: '127.0.0.1' })
  base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`
  community = await t.factory.community()
  // The owner's email also names a member of another community, so signing in needs the community id.
  owner = await t.factory.user(community.id, { role: 'owner', password: PASSWORD })
  const other = await t.factory.community()
  await t.factory.user(other.id, { email: owner.email, password: PASSWORD })
  for (let i = 0; i < EXTRA_REQUESTS; i++) {
    const res = await t.app.inject({ method: 'GET', url: `${IMPORT}/template`, headers: community.bearer })
    expect(res.statusCode).toBe(200)
  }
  browser = await launchChromium()
  context = await browser.newContext({
    acceptDownloads: true,
    baseURL: base,
    reducedMotion: 'reduce',
    viewport: { width: 1280, height: 800 },
  })
  context.setDefaultTimeout(30_000)
  await context.addInitScript({ content: RECORDERS })
  context.on('request', (r) => {
    const url = r.url()
    if (!url.startsWith(`${base}/`) && !url.startsWith('blob:') && !url.startsWith('data:'))
      foreignRequests.push(url)
  })
  page = await context.newPage()
  page.on('pageerror', (e) => pageErrors.push(String(e)))
  page.on('console', (m) => {
    // Refused requests are expected below (wrong password, empty file, the failing poll); a CSP
    // refusal or any other error is not.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text())
  })
})

afterAll(async () => {
  await context?.close()
  await browser?.close()
  await stopWorker?.()
  await t?.close()
})

/**
 * Runs in every page before its own scripts (plain JS: the test project has no DOM types).
 * window.__live: each change to a live region (role=status/alert/log, aria-live), i.e. each time a
 * screen reader may speak. window.__ticks: each value a <progress> bar takes.
 */
const RECORDERS = `
  window.__live = []
  window.__ticks = []
  const LIVE = '[aria-live], [role="status"], [role="alert"], [role="log"]'
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'attributes') {
        if (r.target instanceof HTMLProgressElement) window.__ticks.push(r.target.getAttribute('value'))
        continue
      }
      const el = r.target instanceof Element ? r.target : r.target.parentElement
      const region = el && el.closest(LIVE)
      if (region) window.__live.push({ region: region.id, text: region.textContent })
    }
  }).observe(document, {
    subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['value'],
  })
`

// ---- axe ------------------------------------------------------------------------------------

interface AxeResult {
  violations: {
    id: string
    impact: string
    help: string
    nodes: { target: string[]; failureSummary: string }[]
  }[]
  passes: unknown[]
}

/** Runs axe on the page as it is now; fails with a readable list of violations. */
async function expectNoAxeViolations(state: string) {
  if ((await page.evaluate('typeof window.axe')) !== 'object') await page.evaluate(AXE_SOURCE)
  const result = await page.evaluate<AxeResult>(
    `axe.run(document, ${JSON.stringify({ runOnly: { type: 'tag', values: AXE_TAGS }, resultTypes: ['violations'] })})`,
  )
  const found = result.violations.flatMap((v) =>
    v.nodes.map((n) => `${v.id} (${v.impact}) ${n.target.join(' ')}: ${v.help}. ${n.failureSummary}`),
  )
  expect(found, `axe on ${state}`).toEqual([])
  expect(result.passes.length, `axe ran its rules on ${state}`).toBeGreaterThan(10)
}

/** axe again at 320 CSS px (WCAG 1.4.10 reflow): no violation, and the page itself never scrolls sideways. */
async function expectReflows(state: string) {
  await page.setViewportSize({ width: 320, height: 800 })
  try {
    // Two frames: resize observers (a scrolling table becomes a Tab stop) have run.
    await page.evaluate('new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))')
    await expectNoAxeViolations(`${state} at 320 px`)
    // Whatever sticks out of the 320 px page (a table's scrolling wrapper may hold wider content).
    const overflowing = await page.evaluate<string[]>(`[...document.querySelectorAll('body *')]
      .filter((el) => !el.closest('.table-wrap') && el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
      .map((el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : '') + ' ' + Math.round(el.getBoundingClientRect().right))`)
    expect(overflowing, `${state} at 320 px: wider than the page`).toEqual([])
    expect(
      await page.evaluate('document.documentElement.scrollWidth'),
      `${state} at 320 px`,
    ).toBeLessThanOrEqual(320)
  } finally {
    await page.setViewportSize({ width: 1280, height: 800 })
  }
}

// ---- what axe cannot check ------------------------------------------------------------------

/** Contrast helpers, in the page: colours of computed styles and WCAG's contrast ratio. */
const CONTRAST = `
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c || '')
    if (!m) return null
    const [r, g, b, a = 1] = m[1].split(/[\\s,/]+/).filter(Boolean).map(Number)
    return { r, g, b, a }
  }
  const lum = ({ r, g, b }) => {
    const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b)
  }
  const ratio = (x, y) => {
    const [hi, lo] = [lum(x), lum(y)].sort((p, q) => q - p)
    return Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100
  }
  const backdrop = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor)
      if (c && c.a > 0) return c
    }
    return { r: 255, g: 255, b: 255, a: 1 }
  }
`

interface FocusStop {
  /** "tag accessible-ish name", or "body" when nothing has focus. */
  label: string
  focusVisible: boolean
  /** Best contrast of the focus ring (outline or box-shadow ring) against what surrounds it. */
  ring: number
  opacity: number
  inViewport: boolean
}

/** The focused element: what it is, and whether its focus ring can be seen. */
const FOCUS_STOP = `(() => {
  ${CONTRAST}
  const el = document.activeElement
  if (!el || el === document.body) return { label: 'body', focusVisible: false, ring: 0, opacity: 1, inViewport: false }
  const name = (el.labels && el.labels[0] ? el.labels[0].textContent : el.getAttribute('aria-label') || el.textContent)
    .replace(/\\s+/g, ' ').trim()
  const s = getComputedStyle(el)
  // An outline drawn inside the element sits on its own background, one drawn outside on its parent's.
  const around = backdrop(parseFloat(s.outlineOffset) < 0 ? el : el.parentElement)
  const rings = []
  if (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2) rings.push(parse(s.outlineColor))
  for (const m of (s.boxShadow || '').matchAll(/rgba?\\([^)]+\\)[^,]*?(-?[\\d.]+)px\\s+(-?[\\d.]+)px\\s+(-?[\\d.]+)px\\s+(-?[\\d.]+)px/g)) {
    if (parseFloat(m[4]) >= 2) rings.push(parse(m[0]))
  }
  const r = el.getBoundingClientRect()
  return {
    label: el.tagName.toLowerCase() + (name ? ' ' + name : el.id ? ' #' + el.id : ''),
    focusVisible: el.matches(':focus-visible'),
    ring: Math.max(0, ...rings.filter((c) => c && c.a > 0).map((c) => ratio(c, around))),
    opacity: Number(s.opacity),
    inViewport: r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth,
  }
})()`

const focusStop = () => page.evaluate<FocusStop>(FOCUS_STOP)
const focused = async () => (await focusStop()).label

/** The focus ring of the focused element is there and at least 3:1 (WCAG 1.4.11 / 2.4.7). */
async function expectVisibleFocus(where: string) {
  const stop = await focusStop()
  expect(stop.focusVisible, `${where}: ${stop.label} matches :focus-visible`).toBe(true)
  expect(stop.ring, `${where}: focus ring of ${stop.label}`).toBeGreaterThanOrEqual(3)
  expect(stop.opacity, `${where}: ${stop.label} is not faded`).toBe(1)
  expect(stop.inViewport, `${where}: ${stop.label} is on screen`).toBe(true)
  return stop.label
}

/** Tabs through the page from its start; answers each stop, checking that each one's focus can be seen. */
async function tabThrough(where: string): Promise<string[]> {
  // From the top of the document: focus <body> for a moment, so the next Tab goes to its first control.
  await page.evaluate(`window.scrollTo(0, 0)
    document.body.tabIndex = -1
    document.body.focus()
    document.body.removeAttribute('tabindex')`)
  const stops: string[] = []
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab')
    const stop = await focusStop()
    if (stop.label === 'body' || stops.includes(stop.label)) break
    stops.push(await expectVisibleFocus(`${where}, Tab stop ${i + 1}`))
  }
  return stops
}

/** Edges of text inputs and selects: 3:1 against their background (WCAG 1.4.11). */
async function expectControlEdges(where: string) {
  const weak = await page.evaluate<string[]>(`(() => {
    ${CONTRAST}
    return [...document.querySelectorAll('input:not([type=file]):not([type=checkbox]), select')]
      .filter((el) => el.offsetParent !== null)
      .map((el) => [el, ratio(parse(getComputedStyle(el).borderTopColor), backdrop(el.parentElement))])
      .filter(([, r]) => r < 3)
      .map(([el, r]) => el.id + ' ' + r)
  })()`)
  expect(weak, `${where}: control edges under 3:1`).toEqual([])
}

/** Nothing on the page animates (reduced motion is emulated: there must be nothing to reduce). */
async function expectStill(where: string) {
  expect(await page.evaluate(`matchMedia('(prefers-reduced-motion: reduce)').matches`)).toBe(true)
  expect(await page.evaluate('document.getAnimations().length'), `${where}: animations`).toBe(0)
}

/** The live regions' changes since the last call. */
async function liveChanges(): Promise<{ region: string; text: string }[]> {
  return page.evaluate('window.__live.splice(0)')
}

/** A field marked as the one at fault: aria-invalid, described by the error (a role=alert) that says why. */
async function expectFieldAtFault(label: string, errorId: string, message: RegExp) {
  const field = page.getByLabel(label, { exact: true })
  expect(await field.getAttribute('aria-invalid'), `${label} aria-invalid`).toBe('true')
  expect(
    (await field.getAttribute('aria-describedby'))?.split(' '),
    `${label} described by the error`,
  ).toContain(errorId)
  const error = page.locator(`#${errorId}`)
  expect(await error.getAttribute('role')).toBe('alert')
  expect(await error.textContent()).toMatch(message)
}

async function expectNotAtFault(label: string, errorId: string) {
  const field = page.getByLabel(label, { exact: true })
  expect(await field.getAttribute('aria-invalid'), `${label} aria-invalid`).toBeNull()
  expect((await field.getAttribute('aria-describedby'))?.split(' ') ?? [], label).not.toContain(errorId)
}

function importCsv(): string {
  const lines = ['email,username,first_name,xp']
  for (let i = 1; i <= ROWS; i++)
    lines.push(BAD_ROWS.get(i) ?? `a11y${i}@example.com,a11y_${i},Member ${i},${i}`)
  return `${lines.join('\n')}\n`
}

// ---- the tests ------------------------------------------------------------------------------

describe('admin console accessibility', () => {
  it('has no motion to reduce: no transition or animation outside a no-preference query', async () => {
    const css = await readFile(`${ADMIN_ROOT}admin.css`, 'utf8')
    const outside = css.replace(
      /@media[^{]*prefers-reduced-motion:\s*no-preference[^{]*\{(?:[^{}]*\{[^}]*\})*\s*\}/g,
      '',
    )
    expect(outside).not.toMatch(/\b(transition|animation)(-[a-z-]+)?\s*:/)
    expect(outside).not.toMatch(/scroll-behavior\s*:\s*smooth/)
    for (const file of ['common.js', 'login.js', 'users.js', 'api-log.js']) {
      expect(await readFile(`${ADMIN_ROOT}${file}`, 'utf8'), file).not.toMatch(/smooth|\.animate\(/)
    }
  })

  it('sign-in page: axe-clean, used with the keyboard only, errors tied to their fields', async () => {
    await page.goto('/admin/login.html')
    await expectNoAxeViolations('the sign-in page')
    await expectReflows('the sign-in page')
    await expectControlEdges('the sign-in page')
    await expectStill('the sign-in page')
    // Empty required fields are not shown as wrong before anyone typed or submitted.
    expect(await page.evaluate(`document.querySelectorAll('[aria-invalid], :user-invalid').length`)).toBe(0)
    const borders = await page.evaluate<string[]>(
      `[...document.querySelectorAll('input')].map((i) => getComputedStyle(i).borderTopColor)`,
    )
    expect(new Set(borders).size, `pristine borders: ${borders}`).toBe(1)

    expect(await tabThrough('sign-in')).toEqual([
      'input Email',
      'input Password',
      'input Community id (optional)',
      'button Sign in',
    ])

    // The email has accounts in two communities: the community id field is the one at fault.
    await page.getByLabel('Email').focus()
    await page.keyboard.type(owner.email)
    await page.keyboard.press('Tab')
    await page.keyboard.type('wrong password!')
    await page.keyboard.press('Enter')
    await expect.poll(() => page.locator('#login-error').textContent()).toMatch(/several communities/)
    expect(await focused()).toBe('input Community id (optional)')
    await expectVisibleFocus('the community id at fault')
    await expectFieldAtFault('Community id (optional)', 'login-error', /communityId/)
    // Its hint still describes it too.
    expect(await page.getByLabel('Community id (optional)').getAttribute('aria-describedby')).toBe(
      'communityId-hint login-error',
    )
    await expectNotAtFault('Password', 'login-error')
    await expectNoAxeViolations('the sign-in page, community id required')

    // With the community id the password is refused: now the credentials are at fault, the password focused.
    await page.keyboard.type(community.id)
    await expectNotAtFault('Community id (optional)', 'login-error') // edited: no longer at fault
    await page.keyboard.press('Enter')
    await expect.poll(() => page.locator('#login-error').textContent()).toBe('Invalid email or password')
    expect(await focused()).toBe('input Password')
    await expectVisibleFocus('the password at fault')
    await expectFieldAtFault('Password', 'login-error', /Invalid email or password/)
    await expectFieldAtFault('Email', 'login-error', /Invalid email or password/)
    await expectNotAtFault('Community id (optional)', 'login-error')
    expect(await page.getByRole('alert').filter({ hasText: 'Invalid email or password' }).count()).toBe(1)
    await expectNoAxeViolations('the sign-in page, wrong password')
    await expectReflows('the sign-in page, wrong password')
    expect(await page.evaluate('sessionStorage.length')).toBe(0)

    // The password is selected: typing replaces it. Tab to the button and press Space.
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press('Tab')
    await page.keyboard.press('Tab')
    expect(await expectVisibleFocus('sign in')).toBe('button Sign in')
    await page.keyboard.press('Space')
    await page.waitForURL(/\/admin\/users\.html$/)
  })

  it('users page: axe-clean with results, a refused upload and the job link; all by keyboard', async () => {
    await expect.poll(() => page.locator('[data-user]').textContent()).toBe(owner.email)
    await expectNoAxeViolations('the users page')
    await expectControlEdges('the users page')
    await expectStill('the users page')

    const controls = [
      'a Skip to content',
      'a Users',
      'a API log',
      'button Sign out',
      'select Operation',
      'button Download the CSV template',
      'input CSV file',
      'input Dry run',
      'button Upload',
      'select Field',
      'input Equals',
      'button Search',
    ]
    expect(await tabThrough('users')).toEqual(controls)
    // The skip link (shown when focused: checked on the way) moves focus to the main content.
    await page.getByRole('link', { name: 'Skip to content' }).focus()
    await page.keyboard.press('Enter')
    expect(await page.evaluate('document.activeElement.id')).toBe('main')

    // Search from the keyboard: pressing Search keeps focus on it while the answer comes.
    await page.getByLabel('Field').focus()
    await page.keyboard.press('Tab')
    await page.keyboard.type(owner.email)
    await page.keyboard.press('Tab')
    await page.keyboard.press('Space')
    await page.locator('#users tbody tr').first().waitFor()
    expect(await page.locator('#users tbody tr td').first().textContent()).toBe(owner.email)
    expect(await page.getByRole('status').filter({ hasText: '1 user on page 1 of 1.' }).count()).toBe(1)
    expect(await expectVisibleFocus('after search')).toBe('button Search')
    expect(await page.getByRole('table', { name: 'Users found' }).count()).toBe(1)
    await expectNoAxeViolations('the users page with search results')
    await expectReflows('the users page with search results')

    // The CSV template from the keyboard; the button keeps focus.
    await page.getByRole('button', { name: 'Download the CSV template' }).focus()
    const [template] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')])
    expect(template.suggestedFilename()).toBe('hearth-import-template.csv')
    await expect.poll(focused).toBe('button Download the CSV template')
    await expect
      .poll(() => page.locator('#upload-status').textContent())
      .toBe('Saved hearth-import-template.csv.')

    // An empty file, chosen with Space on the file input: refused, and the file input is at fault.
    await page.keyboard.press('Tab')
    expect(await focused()).toBe('input CSV file')
    const [emptyChooser] = await Promise.all([page.waitForEvent('filechooser'), page.keyboard.press('Space')])
    await emptyChooser.setFiles({ name: 'empty.csv', mimeType: 'text/csv', buffer: Buffer.alloc(0) })
    await page.keyboard.press('Tab')
    await page.keyboard.press('Tab')
    expect(await focused()).toBe('button Upload')
    await page.keyboard.press('Enter')
    await expect.poll(() => page.locator('#upload-error').textContent()).toBe('The uploaded file is empty')
    expect(await focused()).toBe('input CSV file')
    await expectVisibleFocus('the file at fault')
    await expectFieldAtFault('CSV file', 'upload-error', /empty/)
    await expectNoAxeViolations('the users page, upload refused')

    // The real file, again with Space; choosing it clears the fault. Enter on Upload, then follow the link.
    const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.keyboard.press('Space')])
    await chooser.setFiles({ name: 'members.csv', mimeType: 'text/csv', buffer: Buffer.from(importCsv()) })
    await expectNotAtFault('CSV file', 'upload-error')
    await page.keyboard.press('Tab')
    await page.keyboard.press('Tab')
    expect(await focused()).toBe('button Upload')
    await page.keyboard.press('Enter')
    const link = page.getByRole('link', { name: 'Watch its progress in the API log' })
    await link.waitFor()
    jobId = (await page.locator('#job-id').textContent())!.trim()
    expect(jobId).toMatch(/^[0-9a-f]{24}$/)
    // Focus moved to the result, which says what happened; the next Tab is its link.
    expect(await page.evaluate('document.activeElement.id')).toBe('upload-result')
    await expectVisibleFocus('the upload result')
    expect(await page.locator('#upload-error').textContent()).toBe('')
    await expectNoAxeViolations('the users page with the job link')
    await page.keyboard.press('Tab')
    expect(await expectVisibleFocus('the job link')).toBe('a Watch its progress in the API log')
    await page.keyboard.press('Enter')
    await page.waitForURL(new RegExp(`/admin/api-log\\.html#job=${jobId}$`))
  })

  it('API log page: axe-clean through a job queued, polled in vain, running, finished, and a failed job', async () => {
    const row = page.locator(`tr.highlight[data-job-id="${jobId}"]`)
    await row.waitFor()
    const bar = row.getByRole('progressbar', { name: `Progress of bulk job …${jobId.slice(-6)}` })
    expect(await bar.getAttribute('value')).toBe('0')
    expect(await row.locator('[data-role="status"]').textContent()).toBe('queued')
    // The row is focused (it is the job just uploaded) and its ring shows on the highlighted row.
    expect(await page.evaluate(`document.activeElement.dataset.jobId`)).toBe(jobId)
    await expectVisibleFocus('the highlighted job row')
    await expectNoAxeViolations('the API log, job queued, request rows')
    await expectControlEdges('the API log')
    await liveChanges()

    // The status poll fails for a few ticks: the alert says so once, not once a second.
    await page.route('**/apis/v1/users/bulk-updates/*', (route) =>
      route.fulfill({
        status: 503,
        contentType: 'application/json',
        body: JSON.stringify({
          status: 'error',
          message: 'The service is unavailable',
          error: { code: 'down' },
        }),
      }),
    )
    await expect.poll(() => page.locator('#log-error').textContent()).toBe('The service is unavailable')
    await page.waitForTimeout(2_500) // two more failed polls
    await expectNoAxeViolations('the API log, polling fails')
    await page.unroute('**/apis/v1/users/bulk-updates/*')
    await expect.poll(() => page.locator('#log-error').textContent()).toBe('')
    expect(await liveChanges()).toEqual([
      { region: 'log-error', text: 'The service is unavailable' },
      { region: 'log-error', text: '' },
    ])
    await page.evaluate('window.__ticks.splice(0)')

    // The worker takes the job: a running card, checked part-way.
    await slowChunks(t.deps.database.db, CHUNK_SECONDS)
    const { startWorker } = await import('../../src/worker.ts')
    stopWorker = await startWorker(t.deps, { log: () => {} })
    await expect
      .poll(async () => Number(await bar.getAttribute('value')), { timeout: 30_000, interval: 50 })
      .toBeGreaterThan(0)
    expect(Number(await bar.getAttribute('value'))).toBeLessThan(100)
    expect(await row.locator('[data-role="status"]').textContent()).toBe('processing')
    await expectNoAxeViolations('the API log, job running')
    await expectStill('the API log, job running')

    await expect.poll(() => bar.getAttribute('value'), { timeout: 60_000 }).toBe('100')
    await expect
      .poll(() => row.locator('[data-role="status"]').textContent(), { timeout: 10_000 })
      .toBe('completed with errors')
    // The bar moved several times; a screen reader heard the job start and finish, nothing more.
    const ticks = await page.evaluate<string[]>('window.__ticks.splice(0)')
    const announced = await liveChanges()
    const short = jobId.slice(-6)
    expect(new Set(ticks).size, `progress values: ${ticks}`).toBeGreaterThanOrEqual(3)
    expect(announced.map((a) => a.region)).toEqual(announced.map(() => 'log-status'))
    expect(announced.at(-1)?.text).toBe(`Bulk job …${short} finished: completed with errors, 2 failed rows.`)
    for (const a of announced.slice(0, -1))
      expect(a.text).toMatch(new RegExp(`^Bulk job …${short} is (validating|processing)\\.$`))
    expect(announced.length, JSON.stringify(announced)).toBeLessThanOrEqual(3)
    // No bar, count or percentage sits inside a live region.
    expect(
      await page.locator('[aria-live] .job, [role=status] .job, [role=alert] .job, [role=log] .job').count(),
    ).toBe(0)
    await expectNoAxeViolations('the API log, job finished with failed rows')

    // A job that fails as a whole; Refresh from the keyboard keeps focus on it.
    const broken = await runJob(t, IMPORT, community.bearer, {
      file: 'email,email\nx@example.com,y@example.com\n',
    })
    expect(broken.status).toBe('failed')
    await page.getByRole('button', { name: 'Refresh' }).focus()
    await page.keyboard.press('Enter')
    const brokenRow = page.locator(`tr[data-job-id="${broken.jobId}"]`)
    await brokenRow.waitFor()
    expect(await brokenRow.locator('.error').textContent()).toBe('The column "email" appears twice')
    await expect.poll(focused).toBe('button Refresh')
    await expectVisibleFocus('after Refresh')
    // Another filter, chosen with the arrow keys, reloads the list and leaves focus on the filter.
    await page.getByLabel('Show').focus()
    await page.keyboard.press('ArrowDown')
    await expect
      .poll(() =>
        page
          .getByRole('status')
          .filter({ hasText: /entries shown/ })
          .count(),
      )
      .toBe(1)
    await expect.poll(() => page.locator('#log tbody tr').count()).toBeLessThan(10) // bulk jobs only
    expect(await focused()).toBe('select Show')
    await page.keyboard.press('ArrowUp')
    await expect.poll(() => page.locator('#log tbody tr').count()).toBe(50)
    expect(await focused()).toBe('select Show')
    await expectNoAxeViolations('the API log, finished and failed jobs, request rows')
    await expectReflows('the API log')

    // Every bar has a name of its own, as the card and the announcements name its job.
    const bars = page.getByRole('progressbar')
    const names = await bars.evaluateAll((els) => els.map((e) => e.getAttribute('aria-label')))
    expect(names.length).toBe(await page.locator('.job').count())
    expect(names).toContain(`Progress of bulk job …${short}`)
    expect(names).toContain(`Progress of bulk job …${broken.jobId.slice(-6)}`)
    expect(new Set(names).size).toBe(names.length)
    expect(await page.getByRole('progressbar', { name: `Progress of bulk job …${short}` }).count()).toBe(1)

    // Tab order: header, filters, each job's download, then "Load older entries".
    await page.goto('/admin/api-log.html')
    await page.locator(`tr[data-job-id="${jobId}"]`).waitFor()
    const stops = await tabThrough('API log')
    expect(stops).toEqual([
      'a Skip to content',
      'a Users',
      'a API log',
      'button Sign out',
      'select Show',
      'button Refresh',
      `button Download failed rows (CSV) for bulk job …${short}`,
      'button Load older entries',
    ])
    // The failed rows, from the keyboard; the button keeps focus.
    await page.getByRole('button', { name: `Download failed rows (CSV) for bulk job …${short}` }).focus()
    const [failed] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')])
    expect(failed.suggestedFilename()).toBe(`failed-rows-${jobId}.csv`)
    await expect.poll(focused).toBe(`button Download failed rows (CSV) for bulk job …${short}`)
    // The last page of older entries: the button goes away and focus moves to the first entry it loaded.
    await page.getByRole('button', { name: 'Load older entries' }).focus()
    const before = await page.locator('#log tbody tr').count()
    await page.keyboard.press('Enter')
    await expect.poll(() => page.locator('#log tbody tr').count()).toBeGreaterThan(before)
    await expect.poll(() => page.getByRole('button', { name: 'Load older entries' }).isHidden()).toBe(true)
    expect(
      await page.evaluate(`[...document.querySelectorAll('#log tbody tr')].indexOf(document.activeElement)`),
    ).toBe(before)
    await expectVisibleFocus('the first older entry')
  })

  it('users page: paging by keyboard keeps focus on the page buttons', async () => {
    await page.goto('/admin/users.html')
    await page.getByLabel('Equals').focus()
    await page.keyboard.press('Enter') // every user: more than one page of 200
    await page.locator('#users tbody tr').first().waitFor()
    const next = page.getByRole('button', { name: 'Next page' })
    await next.focus()
    await page.keyboard.press('Enter')
    await expect.poll(() => page.locator('#page-label').textContent()).toBe('Page 2 of 2')
    // The last page: "Next page" is unavailable but keeps focus, and pressing it again does nothing.
    expect(await expectVisibleFocus('the last page')).toBe('button Next page')
    expect(await next.getAttribute('aria-disabled')).toBe('true')
    await page.keyboard.press('Enter')
    await page.waitForTimeout(200)
    expect(await page.locator('#page-label').textContent()).toBe('Page 2 of 2')
    await page.keyboard.press('Shift+Tab')
    expect(await focused()).toBe('button Previous page')
    await expectNoAxeViolations('the users page, second page of results')

    expect(pageErrors).toEqual([])
    expect(foreignRequests).toEqual([])
  })
})
