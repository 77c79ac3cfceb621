import { createRouter, createWebHashHistory } from 'vue-router'
import { homeRoute, seesCoverage, seesLedgers, seesTransfers, session } from './session'
import LoginView from './views/LoginView.vue'
import CoverageView from './views/CoverageView.vue'
import StationsView from './views/StationsView.vue'
import StationView from './views/StationView.vue'
import AppealsView from './views/AppealsView.vue'
import TransfersView from './views/TransfersView.vue'
import NotificationsView from './views/NotificationsView.vue'
import LedgersView from './views/LedgersView.vue'

// `allowed`: whether the signed-in role may open the view at all (its data is narrowed by the API).
export const routes = [
  { path: '/login', component: LoginView, meta: { public: true } },
  { path: '/coverage', component: CoverageView, meta: { title: '覆盖情况', allowed: seesCoverage } },
  { path: '/stations', component: StationsView, meta: { title: '服务阵地' } },
  { path: '/stations/:id', component: StationView },
  { path: '/appeals', component: AppealsView, meta: { title: '诉求办理' } },
  { path: '/transfers', component: TransfersView, meta: { title: '组织关系转接', allowed: seesTransfers } },
  { path: '/notifications', component: NotificationsView, meta: { title: '消息通知' } },
  { path: '/ledgers', component: LedgersView, meta: { title: '台账导入导出', allowed: seesLedgers } },
  { path: '/:pathMatch(.*)*', redirect: () => (session.token ? homeRoute() : '/login') },
]

export const router = createRouter({ history: createWebHashHistory(), routes })

router.beforeEach((to) => {
  if (to.meta.public) return session.token ? homeRoute() : true
  if (!session.token) return { path: '/login', query: { next: to.fullPath } }
  if (to.meta.allowed && !to.meta.allowed()) return homeRoute()
  return true
})
