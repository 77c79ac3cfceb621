// Who is signed in (the token and GET /api/v1/me), kept for the tab in sessionStorage, and what
// their role and scope let them do: the same rules the services apply
// (libs/platform_contracts/actors.py and each service's access.py), so that the console offers
// only what the API will accept.
import { reactive } from 'vue'

const STORAGE_KEY = 'partybuilding.console.session'

export const session = reactive({ token: null, me: null })

const saved = sessionStorage.getItem(STORAGE_KEY)
if (saved) Object.assign(session, JSON.parse(saved))

export function signIn(token, me) {
  Object.assign(session, { token, me })
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ token, me }))
}

export function signOut() {
  Object.assign(session, { token: null, me: null })
  sessionStorage.removeItem(STORAGE_KEY)
}

const role = () => session.me?.role
const scopeIds = () => (Array.isArray(session.me?.scope) ? session.me.scope : [])

export const isAdmin = () => role() === 'admin'
export const isOperator = () => role() === 'operator'

/** The division prefix the user is limited to: '' for an admin (everywhere), null for roles that
 *  see no division-scoped records (units, organizations, coverage). */
export function divisionScope() {
  if (isAdmin()) return ''
  if (isOperator()) return session.me.scope
  return null
}

export const seesCoverage = () => divisionScope() !== null
export const coversDivision = (division) =>
  isAdmin() || (isOperator() && !!division && division.startsWith(session.me.scope))

// ---- stations (service_station.access): an admin, the division's operator, the station's manager
export const managesStation = (stationId) => role() === 'station_manager' && scopeIds().includes(stationId)
export const runsStation = (station) => coversDivision(station.division) || managesStation(station.id)
export const managedStationIds = () => (role() === 'station_manager' ? scopeIds() : null)

// ---- transfers (member.access): a side acts for its organization in its division
const actsFor = (organizationId, division) =>
  coversDivision(division) || (role() === 'secretary' && scopeIds().includes(organizationId))
const isMember = (memberId) => role() === 'worker' && session.me.scope === memberId
export const seesTransfers = () => ['admin', 'operator', 'secretary', 'worker'].includes(role())

/** The steps this user may take on a transfer now, in the order they are offered. */
export function transferActions(t) {
  const sending = actsFor(t.from_organization_id, t.from_division)
  const receiving = actsFor(t.to_organization_id, t.to_division)
  const open = ['requested', 'approved', 'received'].includes(t.status)
  const actions = []
  if (t.status === 'requested' && sending) actions.push('approve')
  if (t.status === 'approved' && receiving) actions.push('receive')
  if (t.status === 'received' && (receiving || isMember(t.member_id))) actions.push('report-in')
  if (open && (sending || receiving)) actions.push('reject')
  if (open && (isAdmin() || isMember(t.member_id) || t.requested_by === session.me.username)) actions.push('cancel')
  return actions
}
export const awaitsMe = (t) => transferActions(t).some((a) => ['approve', 'receive', 'report-in'].includes(a))

// ---- appeals (appeal.access and appeal.domain.ALLOWED_FROM)
export const seesDepartments = () => ['admin', 'operator', 'handler'].includes(role())
const isAppealStaff = (a) =>
  coversDivision(a.division) || (role() === 'handler' && !!a.department && scopeIds().includes(a.department))
const raisedIt = (a) => a.raised_by === session.me.username
const OPEN = ['submitted', 'accepted', 'assigned']

export function appealActions(a) {
  const staff = isAppealStaff(a)
  const actions = []
  if (staff && a.status === 'submitted') actions.push('accept')
  if (staff && OPEN.includes(a.status)) actions.push('assign')
  if (staff && ['accepted', 'assigned'].includes(a.status)) actions.push('resolve')
  if (staff && a.status === 'resolved') actions.push('close')
  if (staff && OPEN.includes(a.status)) actions.push('reject')
  if (['resolved', 'closed'].includes(a.status) && (raisedIt(a) || coversDivision(a.division))) actions.push('reopen')
  if (['resolved', 'closed'].includes(a.status) && raisedIt(a) && !a.satisfaction) actions.push('rate')
  return actions
}

// ---- ledgers (gateway routes/ledgers.py LEDGER_ROLES): import, export and their templates
const LEDGER_ROLES = {
  units: ['admin', 'operator'], members: ['admin', 'operator', 'secretary'], stations: ['admin', 'operator'],
}
export const ledgersOf = () => Object.keys(LEDGER_ROLES).filter((ledger) => LEDGER_ROLES[ledger].includes(role()))
export const seesLedgers = () => ledgersOf().length > 0

export function homeRoute() {
  if (seesCoverage()) return '/coverage'
  return { station_manager: '/stations', secretary: '/transfers' }[role()] || '/appeals'
}
