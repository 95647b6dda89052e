// Sign-in page: POST /apis/v1/auth/login, keep the session JWT in sessionStorage, go on.
import { getSession, safeNext, saveSession } from './common.js'

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

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  error.textContent = ''
  if (!form.reportValidity()) return
  const email = form.email.value.trim()
  const password = form.password.value
  const communityId = form.communityId.value.trim()
  const body = { email, password, ...(communityId ? { communityId } : {}) }

  submit.disabled = true
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
    if (!res.ok || !answer?.data?.token) throw new Error(messageOf(answer, res.status))
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
    form.password.focus()
    form.password.select()
  } finally {
    submit.disabled = false
    form.removeAttribute('aria-busy')
  }
})
