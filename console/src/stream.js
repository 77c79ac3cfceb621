// The live event stream (GET /api/v1/events/stream, Server-Sent Events): one EventSource per
// signed-in tab, shared by every view (the gateway allows a user only a few streams at once).
// The browser reconnects by itself and resumes from the last event id it saw; the gateway
// narrows what arrives to the user's role and scope.
import { onBeforeUnmount, reactive } from 'vue'
import { API } from './api'
import { session, signOut } from './session'

// The event types the views follow (CONTRACT.md "Events"), by the pattern the stream is asked
// for: an SSE `event:` line names the full type, and EventSource listens by exact name.
const FOLLOWED = {
  'coverage.*': ['changed', 'alert_raised', 'alert_cleared'],
  'unit.*': ['registered', 'updated', 'deregistered'],
  'organization.*': ['created', 'updated', 'unit_attached', 'unit_detached', 'dissolved'],
  'instructor.*': ['assigned', 'unassigned'],
  'member.*': ['registered', 'updated', 'promoted', 'checked_in'],
  'transfer.*': ['requested', 'approved', 'received', 'completed', 'rejected', 'cancelled', 'expired'],
  'station.*': ['registered', 'updated', 'closed', 'supply_low', 'supply_restocked', 'visited',
    'activity_scheduled', 'activity_cancelled'],
  'appeal.*': ['submitted', 'accepted', 'assigned', 'resolved', 'rated', 'reopened', 'rejected', 'closed',
    'overdue', 'escalated', 'merged'],
  'notification.created': [''],
  'import.*': ['progressed', 'finished'],
}
const typesOf = (pattern) => FOLLOWED[pattern].map((name) => (name ? pattern.replace('*', name) : pattern))

export const streamState = reactive({ connected: false })

const listeners = new Set()
let source = null

function matches(pattern, type) {
  return pattern.endsWith('.*') ? type.startsWith(pattern.slice(0, -1)) : pattern === type
}

function dispatch(event) {
  for (const listener of listeners) {
    if (listener.patterns.some((p) => matches(p, event.type))) listener.handler(event)
  }
}

export function openStream() {
  closeStream()
  const query = new URLSearchParams({ types: Object.keys(FOLLOWED).join(','), access_token: session.token })
  source = new EventSource(`${API}/events/stream?${query}`)
  let opened = false
  source.onopen = () => {
    streamState.connected = true
    // Connected again after a drop: views that keep a running job's state GET it once.
    if (opened) dispatch({ type: 'stream.reopened' })
    opened = true
  }
  source.onerror = () => { streamState.connected = false }
  for (const type of Object.keys(FOLLOWED).flatMap(typesOf)) {
    source.addEventListener(type, (message) => dispatch(JSON.parse(message.data)))
  }
  // Events were missed (past the log's retention): views that follow `stream.gap` reload what they show.
  source.addEventListener('stream.gap', () => dispatch({ type: 'stream.gap' }))
  // The gateway's last word when the token expired or the account changed: sign in again.
  source.addEventListener('stream.closed', () => {
    closeStream()
    signOut()
    window.location.hash = '#/login'
  })
}

export function closeStream() {
  if (source) source.close()
  source = null
  streamState.connected = false
}

/** Calls `handler(event)` for each CloudEvent whose type matches one of `patterns` (`a.*` or
 *  exact), while the calling component lives. */
export function onEvents(patterns, handler) {
  const listener = { patterns, handler }
  listeners.add(listener)
  onBeforeUnmount(() => listeners.delete(listener))
}

/** `fn` once, `wait` ms after the last of a burst of calls: a burst of events, one refetch. */
export function debounce(fn, wait = 200) {
  let timer
  return (...args) => {
    clearTimeout(timer)
    timer = setTimeout(() => fn(...args), wait)
  }
}
