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

export async function api(path, { method = 'GET', query, body } = {}) {
  const url = new URL(API + path, window.location.origin)
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value)
  }
  const headers = { Accept: 'application/json' }
  if (session.token) headers.Authorization = `Bearer ${session.token}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await response.text()
  let data = null
  try {
    data = text ? JSON.parse(text) : null
  } catch {  // not the gateway's JSON (a proxy's error page): its start is the detail
    data = { detail: text.slice(0, 200) }
  }
  if (!response.ok) {
    if (response.status === 401 && session.token) {
      signOut()
      window.location.hash = '#/login'
    }
    throw new ApiError(response.status, data)
  }
  return data
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
