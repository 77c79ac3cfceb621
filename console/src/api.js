// The platform's REST API (/api/v1) with the signed-in user's token. Errors are RFC 9457
// problem documents: their detail is what the user is shown; a 401 ends the session.
import { session, signIn, signOut } from './session'

export const API = '/api/v1'

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`)
    this.status = status
    this.problem = problem
  }
}

function urlOf(path, query) {
  const url = new URL(API + path, window.location.origin)
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value)
  }
  return url
}

function authorized(headers) {
  return session.token ? { ...headers, Authorization: `Bearer ${session.token}` } : headers
}

async function refusal(response) {
  const text = await response.text()
  let problem
  try {
    problem = text ? JSON.parse(text) : null
  } catch {  // not the gateway's JSON (a proxy's error page): its start is the detail
    problem = { detail: text.slice(0, 200) }
  }
  if (response.status === 401 && session.token) {
    signOut()
    window.location.hash = '#/login'
  }
  return new ApiError(response.status, problem)
}

/** `body` is sent as JSON, `form` (FormData: a file upload) as multipart. */
export async function api(path, { method = 'GET', query, body, form } = {}) {
  const headers = authorized({ Accept: 'application/json' })
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const response = await fetch(urlOf(path, query), {
    method, headers, body: form ?? (body === undefined ? undefined : JSON.stringify(body)),
  })
  if (!response.ok) throw await refusal(response)
  const text = await response.text()
  return text ? JSON.parse(text) : null
}

/** Fetches a file with the user's token (a plain link would carry none) and saves it under the
 *  name the gateway gives it. */
export async function download(path, query) {
  const response = await fetch(urlOf(path, query), { headers: authorized({}) })
  if (!response.ok) throw await refusal(response)
  const disposition = response.headers.get('Content-Disposition') || ''
  const named = /filename\*=UTF-8''([^;]+)/.exec(disposition)
  const link = document.createElement('a')
  link.href = URL.createObjectURL(await response.blob())
  link.download = named ? decodeURIComponent(named[1]) : path.split('/').pop()
  document.body.append(link)
  link.click()
  link.remove()
  // The browser has taken the blob once the click is handled; the object URL is not needed after.
  setTimeout(() => URL.revokeObjectURL(link.href))
}

/** Every item of a list, following next_cursor (lists are at most 500 a page). */
export async function listAll(path, query = {}, most = 2000) {
  const items = []
  let cursor
  do {
    const page = await api(path, { query: { ...query, limit: 500, cursor } })
    items.push(...page.items)
    cursor = page.next_cursor
  } while (cursor && items.length < most)
  return items
}

export async function signInWith(username, password) {
  const { access_token: token } = await api('/auth/token', { method: 'POST', body: { username, password } })
  session.token = token
  try {
    signIn(token, await api('/me'))
  } catch (error) {
    signOut()
    throw error
  }
}
