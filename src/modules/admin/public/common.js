// Shared by every page of the admin console: the session, API calls with the bearer token,
// authenticated downloads and the page header. The JWT lives in sessionStorage only (one tab,
// gone when the tab closes); it is sent in the Authorization header, never in a URL.

const SESSION_KEY = 'hearth.admin.session'
const NEXT_PAGE = /^[a-z-]+\.html(#[A-Za-z0-9=_.-]*)?$/

/** The stored session, or null when there is none or it has expired. */
export function getSession() {
  let s = null
  try {
    s = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? 'null')
  } catch {
    s = null
  }
  if (!s || typeof s.token !== 'string' || !s.user) return null
  if (typeof s.expiresAt === 'number' && Date.now() >= s.expiresAt) {
    sessionStorage.removeItem(SESSION_KEY)
    return null
  }
  return s
}

/** Keeps the login answer (data of POST /apis/v1/auth/login). */
export function saveSession(data) {
  const session = {
    token: data.token,
    expiresAt: Date.now() + Math.max(0, Number(data.expiresIn) || 0) * 1000,
    user: {
      _id: data.user._id,
      email: data.user.email,
      role: data.user.role,
      communityId: data.user.communityId,
    },
  }
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session))
  return session
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY)
}

/** Where to go after signing in: a page of the console (with an optional #fragment), nothing else. */
export function safeNext(value) {
  return typeof value === 'string' && NEXT_PAGE.test(value) ? value : null
}

function toLogin() {
  const here = location.pathname.split('/').pop() + location.hash
  const next = safeNext(here)
  location.replace(
    next && !next.startsWith('login.html') ? `login.html?next=${encodeURIComponent(next)}` : 'login.html',
  )
}

/** The session of a protected page; sends the browser to the sign-in page (and answers null) without one. */
export function requireSession() {
  const s = getSession()
  if (!s) toLogin()
  return s
}

export class ApiError extends Error {
  /** `field`: the request field at fault, when the API names one (its `error.field`). */
  constructor(status, code, message, field = null) {
    super(message)
    this.status = status
    this.code = code
    this.field = field
  }
}

/** The human message of any of the API's envelopes. */
function messageOf(body) {
  if (!body || typeof body !== 'object') return null
  if (typeof body.message === 'string' && body.message) return body.message
  if (body.meta && typeof body.meta.message === 'string') return body.meta.message
  if (body.error && typeof body.error.message === 'string') return body.error.message
  return null
}

const SESSION_ENDED = new Set(['invalid_token', 'unauthorized', 'invalid_authorization_header'])

/** fetch with the bearer token; a 401 that means the session is over signs out. */
async function authedFetch(path, init = {}) {
  const s = getSession()
  if (!s) {
    toLogin()
    throw new ApiError(401, 'signed_out', 'Your session has ended; sign in again.')
  }
  const headers = { ...(init.headers ?? {}), authorization: `Bearer ${s.token}` }
  let res
  try {
    res = await fetch(path, { ...init, headers, cache: 'no-store', credentials: 'omit' })
  } catch (err) {
    if (err && err.name === 'AbortError') throw err
    throw new ApiError(
      0,
      'network_error',
      'The server could not be reached. Check your connection and try again.',
    )
  }
  if (!res.ok) {
    const body = await res.json().catch(() => null)
    const code = body?.error?.code ?? body?.code ?? `http_${res.status}`
    if (res.status === 401 && SESSION_ENDED.has(code)) {
      clearSession()
      toLogin()
    }
    const field = body?.error?.field ?? body?.field ?? null
    throw new ApiError(
      res.status,
      code,
      messageOf(body) ?? `The request failed (HTTP ${res.status}).`,
      typeof field === 'string' ? field : null,
    )
  }
  return res
}

/** Calls the API and answers the parsed JSON body. `json` sends a JSON body, `form` a FormData. */
export async function api(path, { method = 'GET', json, form, signal } = {}) {
  const headers = { accept: 'application/json' }
  let body
  if (json !== undefined) {
    headers['content-type'] = 'application/json'
    body = JSON.stringify(json)
  } else if (form !== undefined) {
    body = form
  }
  const res = await authedFetch(path, { method, headers, body, signal })
  return res.json()
}

function fileNameOf(disposition) {
  const m = /filename="?([^";]+)"?/i.exec(disposition ?? '')
  return m ? m[1] : null
}

/** Fetches a file with the bearer token and saves it through a Blob and an <a download>. Answers the file name. */
export async function download(path, fallbackName) {
  const res = await authedFetch(path, { headers: { accept: 'text/csv, */*' } })
  const blob = await res.blob()
  const name = fileNameOf(res.headers.get('content-disposition')) ?? fallbackName
  const url = URL.createObjectURL(blob)
  const a = document.createElement('a')
  a.href = url
  a.download = name
  a.hidden = true
  document.body.append(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 60_000)
  return name
}

/**
 * Marks a button unavailable (or available again) with aria-disabled rather than `disabled`: a
 * disabled button that has keyboard focus drops it to <body>, so whoever pressed it would start
 * over from the top of the page. It stays focusable and is announced as unavailable; handlers
 * ignore it while isUnavailable() answers true.
 */
export function setUnavailable(button, unavailable) {
  if (unavailable) button.setAttribute('aria-disabled', 'true')
  else button.removeAttribute('aria-disabled')
}
export const isUnavailable = (button) => button.getAttribute('aria-disabled') === 'true'

function describedBy(input) {
  return (input.getAttribute('aria-describedby') ?? '').split(/\s+/).filter(Boolean)
}

/** Ties an error message to the field at fault: aria-invalid, and the message read as its description. */
export function markInvalid(input, errorEl) {
  input.setAttribute('aria-invalid', 'true')
  const ids = describedBy(input)
  if (!ids.includes(errorEl.id)) input.setAttribute('aria-describedby', [...ids, errorEl.id].join(' '))
}

/** Undoes markInvalid: the field is no longer at fault, and no longer described by the message. */
export function clearInvalid(input, errorEl) {
  input.removeAttribute('aria-invalid')
  const ids = describedBy(input).filter((id) => id !== errorEl.id)
  if (ids.length) input.setAttribute('aria-describedby', ids.join(' '))
  else input.removeAttribute('aria-describedby')
}

/**
 * Sets the text of a live region only when it changes: writing the same text again makes screen
 * readers announce it again (a failing once-a-second poll would repeat its error every second).
 */
export function setLiveText(el, text) {
  if (el.textContent !== text) el.textContent = text
}

/**
 * The scrolling wrapper of a wide table (at 320 px, or zoomed in): while it scrolls it is a named,
 * focusable region, so the keyboard can scroll it even where the browser does not make scrollers
 * focusable; while it does not, it is no Tab stop at all.
 */
export function scrollableByKeyboard(wrap) {
  const table = wrap.querySelector('table')
  const update = () => {
    if (wrap.scrollWidth > wrap.clientWidth) {
      wrap.tabIndex = 0
      wrap.setAttribute('role', 'region')
      wrap.setAttribute('aria-label', table?.caption?.textContent ?? 'Table')
    } else {
      wrap.removeAttribute('tabindex')
      wrap.removeAttribute('role')
      wrap.removeAttribute('aria-label')
    }
  }
  const watch = new ResizeObserver(update)
  watch.observe(wrap)
  if (table) watch.observe(table)
  update()
}

/** Fills the header (who is signed in) and wires the sign-out button. */
export function initHeader(session) {
  for (const el of document.querySelectorAll('[data-user]')) el.textContent = session.user.email
  for (const btn of document.querySelectorAll('[data-signout]')) {
    btn.addEventListener('click', () => {
      clearSession()
      location.assign('login.html')
    })
  }
}

const numberFormat = new Intl.NumberFormat()
export const num = (n) => numberFormat.format(Number(n) || 0)
/** "1 row", "2 rows": a count with its noun (English plurals in -s). */
export const count = (n, noun) => `${num(n)} ${Number(n) === 1 ? noun : `${noun}s`}`

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' })
export function when(iso) {
  if (!iso) return ''
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? String(iso) : dateFormat.format(d)
}

/** A small element builder: h('td', {className: 'num'}, 'text', child). Text is always set as text, never HTML. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'className') el.className = v
    else if (k === 'dataset') Object.assign(el.dataset, v)
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else if (k in el && typeof v !== 'string') el[k] = v
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue
    el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
  return el
}
