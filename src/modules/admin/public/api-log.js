// API log page: lists GET /apis/v1/communities/:communityId/api-logs, shows bulk jobs with a
// progress bar, refreshes running jobs every second from GET /apis/v1/users/bulk-updates/:jobId
// (in place, no page reload) and saves the failed rows of finished jobs as CSV.
import {
  ApiError,
  api,
  count,
  download,
  h,
  initHeader,
  isUnavailable,
  num,
  requireSession,
  scrollableByKeyboard,
  setLiveText,
  setUnavailable,
  when,
} from './common.js'

const session = requireSession()

const POLL_MS = 1000
const PAGE_SIZE = 50
const ACTIVE = new Set(['queued', 'validating', 'processing'])
const STATUS_TEXT = {
  queued: 'queued',
  validating: 'validating',
  processing: 'processing',
  completed: 'completed',
  completed_with_errors: 'completed with errors',
  failed: 'failed',
  cancelled: 'cancelled',
}
const STATUS_CLASS = {
  queued: 'run',
  validating: 'run',
  processing: 'run',
  completed: 'ok',
  completed_with_errors: 'warn',
  failed: 'bad',
  cancelled: 'bad',
}
const TYPE_TEXT = { import: 'Import', update: 'Update', premium_currency: 'Premium currency' }

const tbody = document.querySelector('#log tbody')
const form = document.getElementById('filters')
const kindSelect = document.getElementById('kind')
const refreshButton = document.getElementById('refresh')
const moreButton = document.getElementById('more')
const statusLine = document.getElementById('log-status')
const errorLine = document.getElementById('log-error')
const emptyLine = document.getElementById('log-empty')
const focusPanel = document.getElementById('job-focus')
const focusBody = document.getElementById('job-focus-body')

/** Every job on the page: its last known state and the cards that show it. */
const jobs = new Map()
let cursor = null
let loading = false
let pollTimer = null
let loadSeq = 0

const shortId = (id) => id.slice(-6)
const highlightedJob = () => /^#job=([0-9a-f]{24})$/i.exec(location.hash)?.[1]?.toLowerCase() ?? null

// Both lines are live regions: they change only when their text does (see setLiveText), and
// never on a progress tick, so a screen reader hears a job start and finish, not every second.
function announce(text) {
  setLiveText(statusLine, text)
}

function showError(err) {
  setLiveText(errorLine, err instanceof Error ? err.message : String(err))
}

// ---- bulk job cards -------------------------------------------------------------------------

function jobCard(jobId) {
  const card = h('div', { className: 'job', dataset: { jobId } })
  card.append(
    h(
      'div',
      {},
      h('span', { className: 'badge', dataset: { role: 'status' } }),
      ' ',
      h('span', { dataset: { role: 'type' } }),
      ' ',
      h('code', { title: jobId }, `…${shortId(jobId)}`),
    ),
    h(
      'div',
      { className: 'bar' },
      // Named as the card and the announcements name the job (…and the last 6 digits of its id).
      h('progress', { max: 100, value: 0, 'aria-label': `Progress of bulk job …${shortId(jobId)}` }),
      h('span', { dataset: { role: 'pct' } }),
    ),
    h('p', { className: 'counts', dataset: { role: 'counts' } }),
    h('p', { className: 'actions', dataset: { role: 'actions' } }),
  )
  return card
}

/** 42 s, 3 min, 1 h 5 min: an estimate, so whole units. */
function timeLeft(seconds) {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`
  const minutes = Math.round(seconds / 60)
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`
}

function paintCard(card, jobId, job) {
  const part = (role) => card.querySelector(`[data-role="${role}"]`)
  const status = part('status')
  status.textContent = STATUS_TEXT[job.status] ?? job.status
  status.className = `badge ${STATUS_CLASS[job.status] ?? ''}`
  part('type').textContent = `${TYPE_TEXT[job.type] ?? job.type}${job.dryRun ? ' (dry run)' : ''}`
  card.dataset.status = job.status

  const pct = Math.max(0, Math.min(100, Number(job.percentage) || 0))
  const bar = card.querySelector('progress')
  if (bar.getAttribute('value') !== String(pct)) bar.setAttribute('value', String(pct))
  bar.textContent = `${pct} %`
  part('pct').textContent = `${pct} %`

  // A dry run wrote nothing: its counts say what the file would do.
  const would = job.dryRun ? 'would be ' : ''
  const counts = [`${num(job.processed)} of ${count(job.total, 'row')}`]
  if (job.created) counts.push(`${num(job.created)} ${would}created`)
  if (job.updated) counts.push(`${num(job.updated)} ${would}updated`)
  if (job.skipped) counts.push(`${num(job.skipped)} unchanged`)
  counts.push(`${num(job.failed)} ${job.dryRun ? 'would fail' : 'failed'}`)
  if (job.status === 'processing' && job.rowsPerSecond) counts.push(`${num(job.rowsPerSecond)} rows/s`)
  if (job.status === 'processing' && job.secondsLeft != null)
    counts.push(`about ${timeLeft(job.secondsLeft)} left`)
  part('counts').textContent = counts.join(' · ')

  // A finished job says why it failed as a whole (its header, say) and offers its failed rows.
  const actions = part('actions')
  const finished = !ACTIVE.has(job.status)
  const reason = finished && job.error?.message ? job.error.message : ''
  const shownReason = actions.querySelector('.error')?.textContent ?? ''
  // A job that stopped midway also lists the rows it never reached, to upload again.
  const wantsButton = finished && (job.failed > 0 || job.unreachedRowsInCsv === true)
  // Repainted every second while jobs run: leave what is already right, so a focused button stays.
  if (shownReason === reason && Boolean(actions.querySelector('button')) === wantsButton) return
  const children = []
  if (reason) children.push(h('p', { className: 'error' }, reason))
  if (wantsButton) {
    children.push(
      h(
        'button',
        { type: 'button', className: 'secondary', onclick: (e) => downloadFailed(jobId, e.currentTarget) },
        job.failed > 0 ? 'Download failed rows (CSV)' : 'Download rows not applied (CSV)',
        h('span', { className: 'visually-hidden' }, ` for bulk job …${shortId(jobId)}`),
      ),
    )
  }
  actions.replaceChildren(...children)
}

async function downloadFailed(jobId, button) {
  // Marked unavailable, not disabled, so that the button keeps keyboard focus while the file comes.
  if (isUnavailable(button)) return
  setUnavailable(button, true)
  errorLine.textContent = ''
  announce(`Preparing the failed rows of job ${shortId(jobId)}…`)
  try {
    const name = await download(
      `/apis/v1/users/bulk-updates/${encodeURIComponent(jobId)}/details?format=csv`,
      `failed-rows-${jobId}.csv`,
    )
    announce(`Saved ${name}.`)
  } catch (err) {
    announce('')
    showError(err)
  } finally {
    setUnavailable(button, false)
  }
}

/** Registers a card for a job and paints it with what is known. */
function track(jobId, job, card) {
  let entry = jobs.get(jobId)
  if (!entry) {
    entry = { job, cards: new Set() }
    jobs.set(jobId, entry)
  }
  // Log rows carry fewer fields than the job endpoint; keep the richer state when both are known.
  entry.job = { ...entry.job, ...job }
  entry.cards.add(card)
  paintCard(card, jobId, entry.job)
}

function update(jobId, job) {
  const entry = jobs.get(jobId)
  if (!entry) return
  const before = entry.job.status
  entry.job = { ...entry.job, ...job }
  for (const card of entry.cards) paintCard(card, jobId, entry.job)
  if (before !== job.status) {
    const failed = job.failed ? `, ${count(job.failed, 'failed row')}` : ''
    announce(
      ACTIVE.has(job.status)
        ? `Bulk job …${shortId(jobId)} is ${STATUS_TEXT[job.status]}.`
        : `Bulk job …${shortId(jobId)} finished: ${STATUS_TEXT[job.status] ?? job.status}${failed}.`,
    )
  }
}

// ---- polling running jobs -------------------------------------------------------------------

const activeJobs = () => [...jobs].filter(([, e]) => ACTIVE.has(e.job.status) && !e.gone).map(([id]) => id)

function schedulePoll() {
  if (pollTimer !== null || activeJobs().length === 0) return
  pollTimer = setTimeout(poll, POLL_MS)
}

async function poll() {
  const ids = activeJobs()
  let failure = null
  await Promise.all(
    ids.map(async (id) => {
      try {
        const answer = await api(`/apis/v1/users/bulk-updates/${encodeURIComponent(id)}`)
        update(id, answer.data)
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          const entry = jobs.get(id)
          if (entry) entry.gone = true
        } else failure = err
      }
    }),
  )
  if (failure) showError(failure)
  else if (errorLine.textContent && !loading) errorLine.textContent = ''
  pollTimer = null
  schedulePoll()
}

// ---- the log table --------------------------------------------------------------------------

function keyLabel(apiKeyId) {
  if (!apiKeyId) return 'admin session'
  if (apiKeyId.startsWith('system:')) return 'system key'
  return `key …${apiKeyId.slice(-6)}`
}

function renderRow(entry) {
  const tr = h('tr', { dataset: { logId: entry._id } })
  const summary = entry.summary ?? {}
  const request = h('td', {}, h('code', {}, `${entry.method} ${entry.path}`))
  if (entry.kind === 'bulk_job' && typeof summary.fileName === 'string') {
    request.append(
      h(
        'div',
        { className: 'hint' },
        `${summary.fileName}${typeof summary.rows === 'number' ? ` · ${count(summary.rows, 'row')}` : ''}`,
      ),
    )
  }
  const jobCell = h('td')
  if (entry.bulkJob) {
    const card = jobCard(entry.bulkJob._id)
    tr.dataset.jobId = entry.bulkJob._id
    jobCell.append(card)
    track(entry.bulkJob._id, entry.bulkJob, card)
  }
  tr.append(
    h('td', {}, h('time', { datetime: entry.createdAt }, when(entry.createdAt))),
    request,
    h('td', { className: 'num' }, String(entry.status)),
    h('td', {}, keyLabel(entry.apiKeyId)),
    jobCell,
  )
  return tr
}

function forgetCardsIn(root) {
  for (const card of root.querySelectorAll('.job')) {
    const entry = jobs.get(card.dataset.jobId)
    if (!entry) continue
    entry.cards.delete(card)
    if (entry.cards.size === 0) jobs.delete(card.dataset.jobId)
  }
}

/**
 * `toJob`: the page was opened on (or moved to) #job=<id>, so focus goes to that job. A Refresh
 * or another filter leaves focus on the control used (unless the focused row was replaced).
 */
async function load({ reset, toJob = false }) {
  const seq = ++loadSeq
  loading = true
  // Unavailable, not disabled: the button pressed keeps keyboard focus (see setUnavailable).
  setUnavailable(refreshButton, true)
  setUnavailable(moreButton, true)
  errorLine.textContent = ''
  if (reset) announce('Loading the API log…')
  try {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) })
    if (kindSelect.value) q.set('kind', kindSelect.value)
    if (!reset && cursor) q.set('cursor', cursor)
    const answer = await api(
      `/apis/v1/communities/${encodeURIComponent(session.user.communityId)}/api-logs?${q}`,
    )
    if (seq !== loadSeq) return
    if (reset) {
      forgetCardsIn(tbody)
      tbody.replaceChildren()
    }
    const focusLost = document.activeElement === document.body || document.activeElement === null
    const rows = answer.data.map(renderRow)
    tbody.append(...rows)
    cursor = answer.meta?.nextCursor ?? null
    // "Load older entries" goes away after the last page: its focus moves to the first entry it loaded.
    const moreHadFocus = document.activeElement === moreButton
    moreButton.hidden = cursor === null
    if (moreHadFocus && moreButton.hidden && rows[0]) {
      rows[0].tabIndex = -1
      rows[0].focus()
    }
    emptyLine.hidden = tbody.rows.length > 0
    const running = activeJobs().length
    announce(
      `${num(tbody.rows.length)} entries shown${running ? `, ${running} bulk ${running === 1 ? 'job' : 'jobs'} running` : ''}.`,
    )
    if (reset) await highlight({ focus: toJob || focusLost })
    schedulePoll()
  } catch (err) {
    if (seq === loadSeq) {
      announce('')
      showError(err)
    }
  } finally {
    if (seq === loadSeq) {
      loading = false
      setUnavailable(refreshButton, false)
      setUnavailable(moreButton, false)
    }
  }
}

/**
 * The job named by #job=<id>: its row is marked (and focused when `focus`); a job not in the list
 * gets its own panel.
 */
async function highlight({ focus }) {
  for (const row of tbody.querySelectorAll('tr.highlight')) {
    row.classList.remove('highlight')
    row.removeAttribute('aria-current')
  }
  const jobId = highlightedJob()
  if (!jobId) {
    focusPanel.hidden = true
    return
  }
  const row = tbody.querySelector(`tr[data-job-id="${jobId}"]`)
  if (row) {
    focusPanel.hidden = true
    forgetCardsIn(focusBody)
    focusBody.replaceChildren()
    row.classList.add('highlight')
    row.setAttribute('aria-current', 'true')
    row.tabIndex = -1
    if (focus) {
      row.focus({ preventScroll: true })
      row.scrollIntoView({ block: 'center' })
    }
    return
  }
  try {
    const answer = await api(`/apis/v1/users/bulk-updates/${encodeURIComponent(jobId)}`)
    forgetCardsIn(focusBody)
    const card = jobCard(jobId)
    focusBody.replaceChildren(card)
    track(jobId, answer.data, card)
    focusPanel.hidden = false
    focusPanel.tabIndex = -1
    if (focus) focusPanel.focus()
  } catch (err) {
    showError(
      err instanceof ApiError && err.status === 404
        ? new Error(`Bulk job ${jobId} was not found in this community.`)
        : err,
    )
  }
}

if (session) {
  initHeader(session)
  for (const wrap of document.querySelectorAll('.table-wrap')) scrollableByKeyboard(wrap)
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    if (!isUnavailable(refreshButton)) load({ reset: true })
  })
  kindSelect.addEventListener('change', () => load({ reset: true }))
  moreButton.addEventListener('click', () => {
    if (!isUnavailable(moreButton)) load({ reset: false })
  })
  window.addEventListener('hashchange', () => highlight({ focus: true }).then(schedulePoll))
  load({ reset: true, toJob: true })
}
