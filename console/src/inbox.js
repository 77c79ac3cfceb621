// How many notifications the user has not read, for the menu's badge.
import { reactive } from 'vue'
import { api } from './api'

export const inbox = reactive({ unread: 0 })

export async function refreshUnread() {
  const page = await api('/notifications', { query: { unread: true, limit: 100 } })
  inbox.unread = page.items.length
}
