// Users page: search (POST /apis/v1/users/filter), the CSV template, and bulk uploads whose job
// is then watched on the API log page.
import {
  ApiError,
  api,
  clearInvalid,
  download,
  h,
  initHeader,
  isUnavailable,
  markInvalid,
  num,
  requireSession,
  scrollableByKeyboard,
  setUnavailable,
  when,
} from './common.js'

const session = requireSession()

const UPLOAD_PATHS = {
  import: '/apis/v1/users/bulk-import',
  update: '/apis/v1/users/bulk-update',
  'premium-currency': '/apis/v1/users/bulk-update/premium-currency',
}
const RESULT_FIELDS = [
  'email',
  'username',
  'first_name',
  'last_name',
  'display_name',
  'xp',
  'coins',
  'premium',
  'created_at',
]

// ---- upload and template --------------------------------------------------------------------

const uploadForm = document.getElementById('upload-form')
const operation = document.getElementById('operation')
const fileInput = document.getElementById('file')
const dryRun = document.getElementById('dryRun')
const uploadButton = document.getElementById('upload')
const templateButton = document.getElementById('template')
const uploadError = document.getElementById('upload-error')
const uploadStatus = document.getElementById('upload-status')
const uploadResult = document.getElementById('upload-result')

const errorText = (err) => (err instanceof Error ? err.message : String(err))

function kilobytes(bytes) {
  return bytes < 1024 ? `${bytes} bytes` : `${num(Math.ceil(bytes / 1024))} KB`
}

// Buttons busy with a request are marked with setUnavailable, not `disabled`, so that the one
// pressed keeps keyboard focus; their handlers return at once while it is set.

async function saveTemplate() {
  if (isUnavailable(templateButton)) return
  setUnavailable(templateButton, true)
  clearUploadError()
  uploadStatus.textContent = 'Preparing the template…'
  try {
    const type = operation.value
    const name = await download(
      `/apis/v1/users/bulk-import/template?type=${encodeURIComponent(type)}`,
      `hearth-${type}-template.csv`,
    )
    uploadStatus.textContent = `Saved ${name}.`
  } catch (err) {
    uploadStatus.textContent = ''
    uploadError.textContent = errorText(err)
  } finally {
    setUnavailable(templateButton, false)
  }
}

function clearUploadError() {
  uploadError.textContent = ''
  clearInvalid(fileInput, uploadError)
}

/**
 * Shows why an upload was refused. An error about the file (the API names the field `data`: empty,
 * too large, too many rows) marks the file input invalid, described by the message, and focuses it;
 * any other leaves focus on the Upload button.
 */
function showUploadError(err) {
  uploadError.textContent = errorText(err)
  if (err instanceof ApiError && err.field === 'data') {
    markInvalid(fileInput, uploadError)
    fileInput.focus()
  }
}

async function upload(event) {
  event.preventDefault()
  if (isUnavailable(uploadButton)) return
  clearUploadError()
  uploadResult.hidden = true
  if (!uploadForm.reportValidity()) return
  const file = fileInput.files?.[0]
  if (!file) return
  const op = operation.value
  const form = new FormData()
  if (op === 'import') form.append('communityId', session.user.communityId)
  form.append('dryRun', dryRun.checked ? 'true' : 'false')
  form.append('data', file, file.name)

  setUnavailable(uploadButton, true)
  uploadForm.setAttribute('aria-busy', 'true')
  uploadStatus.textContent = `Uploading ${file.name} (${kilobytes(file.size)})…`
  try {
    const answer = await api(UPLOAD_PATHS[op], { method: 'POST', form })
    const jobId = answer.data.jobId
    uploadStatus.textContent = ''
    uploadResult.replaceChildren(
      h(
        'p',
        {},
        `${dryRun.checked ? 'Dry run: ' : ''}${answer.message ?? 'The job is queued'}. Job id: `,
        h('code', { id: 'job-id' }, jobId),
      ),
      h(
        'p',
        {},
        h(
          'a',
          { href: `api-log.html#job=${encodeURIComponent(jobId)}`, id: 'job-link' },
          'Watch its progress in the API log',
        ),
      ),
    )
    uploadResult.hidden = false
    uploadResult.focus()
    // A dry run keeps the file, to be run for real next; a real run clears it, so a second click
    // cannot send the same file twice. The operation stays as chosen.
    if (!dryRun.checked) fileInput.value = ''
  } catch (err) {
    uploadStatus.textContent = ''
    showUploadError(err)
  } finally {
    setUnavailable(uploadButton, false)
    uploadForm.removeAttribute('aria-busy')
  }
}

// ---- search ---------------------------------------------------------------------------------

const searchForm = document.getElementById('search-form')
const searchField = document.getElementById('search-field')
const searchValue = document.getElementById('search-value')
const searchButton = document.getElementById('search')
const searchError = document.getElementById('search-error')
const searchStatus = document.getElementById('search-status')
const table = document.getElementById('users')
const tbody = table.querySelector('tbody')
const pager = document.getElementById('pager')
const prev = document.getElementById('prev')
const next = document.getElementById('next')
const pageLabel = document.getElementById('page-label')

let query = null
let page = 1

const fullName = (u) => [u.first_name, u.last_name].filter(Boolean).join(' ') || u.display_name || ''

function renderUser(u) {
  return h(
    'tr',
    { dataset: { userId: u._id } },
    h('td', {}, u.email ?? ''),
    h('td', {}, u.username ?? ''),
    h('td', {}, fullName(u)),
    h('td', { className: 'num' }, num(u.xp)),
    h('td', { className: 'num' }, num(u.coins)),
    h('td', { className: 'num' }, num(u.premium)),
    h('td', {}, u.created_at ? h('time', { datetime: u.created_at }, when(u.created_at)) : ''),
  )
}

async function search() {
  searchError.textContent = ''
  clearInvalid(searchValue, searchError)
  setUnavailable(searchButton, true)
  searchStatus.textContent = 'Searching…'
  try {
    const body = {
      fields: RESULT_FIELDS,
      page,
      ...(query.value ? { filter: { [query.field]: query.value } } : {}),
    }
    const answer = await api('/apis/v1/users/filter', { method: 'POST', json: body })
    const { users, total_pages: totalPages = 1 } = answer.data
    tbody.replaceChildren(...users.map(renderUser))
    table.hidden = users.length === 0
    pager.hidden = totalPages <= 1
    // Not `disabled`: the page button just pressed keeps focus when it reaches the first or last page.
    setUnavailable(prev, page <= 1)
    setUnavailable(next, page >= totalPages)
    pageLabel.textContent = `Page ${num(page)} of ${num(Math.max(1, totalPages))}`
    searchStatus.textContent =
      users.length === 0
        ? 'No users match.'
        : `${num(users.length)} ${users.length === 1 ? 'user' : 'users'} on page ${num(page)} of ${num(Math.max(1, totalPages))}.`
  } catch (err) {
    searchStatus.textContent = ''
    table.hidden = true
    pager.hidden = true
    searchError.textContent =
      err instanceof ApiError && err.code === 'credential_not_accepted'
        ? 'User search is not available to admin sessions yet: the Get Users with Filters endpoint accepts community API keys only.'
        : errorText(err)
    // A value the API refuses (its field is filter.<name>) is the search box's fault.
    if (err instanceof ApiError && err.field?.startsWith('filter')) markInvalid(searchValue, searchError)
  } finally {
    setUnavailable(searchButton, false)
  }
}

if (session) {
  initHeader(session)
  for (const wrap of document.querySelectorAll('.table-wrap')) scrollableByKeyboard(wrap)
  templateButton.addEventListener('click', saveTemplate)
  uploadForm.addEventListener('submit', upload)
  fileInput.addEventListener('change', () => clearInvalid(fileInput, uploadError))
  searchValue.addEventListener('input', () => clearInvalid(searchValue, searchError))
  searchForm.addEventListener('submit', (e) => {
    e.preventDefault()
    if (isUnavailable(searchButton)) return
    query = { field: searchField.value, value: searchValue.value.trim() }
    page = 1
    search()
  })
  prev.addEventListener('click', () => {
    if (!isUnavailable(prev) && !isUnavailable(searchButton) && page > 1) {
      page -= 1
      search()
    }
  })
  next.addEventListener('click', () => {
    if (!isUnavailable(next) && !isUnavailable(searchButton)) {
      page += 1
      search()
    }
  })
}
