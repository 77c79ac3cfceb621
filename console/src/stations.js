// The stations a user looks after: a station manager's own (by id), an operator's division, or
// (an admin, and roles that only use stations) every station a division filter leaves.
import { api, listAll } from './api'
import { divisionScope, managedStationIds } from './session'

export async function stationsInView() {
  const own = managedStationIds()
  if (own) return Promise.all(own.map((id) => api(`/stations/${id}`)))
  return listAll('/stations', { division: divisionScope() || undefined })
}

export const lowSupplies = (station) => station.supplies.filter((s) => s.low)
