// Sign-in page: POST /apis/v1/auth/login, keep the session JWT in sessionStorage, go on.
import {
  clearInvalid,
  getSession,
  isUnavailable,
  markInvalid,
  safeNext,
  saveSession,
  setUnavailable,
} from './common.js'

const form = document.getElementById('login-form')
const error = document.getElementById('login-error')
const status = document.getElementById('login-status')
const submit = form.querySelector('button[type="submit"]')

const next = () => safeNext(new URLSearchParams(location.search).get('next')) ?? 'users.html'

if (getSession()) {
  status.textContent = 'You are already signed in.'
  location.replace(next())
}

function messageOf(body, httpStatus) {
  return body?.message ?? body?.error?.message ?? `Sign-in failed (HTTP ${httpStatus}).`
}

class SignInError extends Error {
  /** `fields`: the inputs the message is about (marked invalid, described by it, the first focused). */
  constructor(message, fields = []) {
    super(message)
    this.fields = fields
  }
}

const inputs = [form.email, form.password, form.communityId]

/**
 * The inputs an error answer is about: the field it names, or both credentials when they were
 * refused (the password first: it is the one usually mistyped, so it gets focus).
 */
function fieldsAtFault(body) {
  const named = inputs.find((input) => input.name === body?.error?.field)
  if (named) return [named]
  if (body?.error?.code === 'invalid_credentials') return [form.password, form.email]
  return []
}

function clearError() {
  error.textContent = ''
  for (const input of inputs) clearInvalid(input, error)
}

// A field edited after an error is no longer known to be at fault.
for (const input of inputs) input.addEventListener('input', () => clearInvalid(input, error))

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  // The button stays focusable while busy (see setUnavailable); a second Enter meanwhile does nothing.
  if (isUnavailable(submit)) return
  clearError()
  if (!form.reportValidity()) return
  const email = form.email.value.trim()
  const password = form.password.value
  const communityId = form.communityId.value.trim()
  const body = { email, password, ...(communityId ? { communityId } : {}) }

  setUnavailable(submit, true)
  form.setAttribute('aria-busy', 'true')
  status.textContent = 'Signing in…'
  try {
    let res
    try {
      res = await fetch('/apis/v1/auth/login', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
      })
    } catch {
      throw new Error('The server could not be reached. Check your connection and try again.')
    }
    const answer = await res.json().catch(() => null)
    if (!res.ok || !answer?.data?.token)
      throw new SignInError(messageOf(answer, res.status), fieldsAtFault(answer))
    const role = answer.data.user?.role
    if (role !== 'owner' && role !== 'admin') {
      throw new Error(
        'This account is not an owner or admin of its community, so it cannot use the admin console.',
      )
    }
    saveSession(answer.data)
    form.password.value = ''
    status.textContent = 'Signed in.'
    location.assign(next())
  } catch (err) {
    status.textContent = ''
    error.textContent = err instanceof Error ? err.message : String(err)
    // The fields at fault say so and read the message as their description; focus goes to the
    // first of them. An error about no field (the server unreachable, a member account) leaves
    // focus where it was: the alert is announced either way.
    const fields = err instanceof SignInError ? err.fields : []
    for (const input of fields) markInvalid(input, error)
    const first = fields[0]
    if (first) {
      first.focus()
      first.select()
    }
  } finally {
    setUnavailable(submit, false)
    form.removeAttribute('aria-busy')
  }
})
