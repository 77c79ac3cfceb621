// The words operators use (shared/DOMAIN.md) for the contract's enumerations.
export const ROLE = {
  admin: '系统管理员', operator: '区划操作员', secretary: '党组织书记', station_manager: '阵地管理员',
  worker: '新就业群体', handler: '部门承办人',
}
export const UNIT_TYPE = {
  enterprise: '非公企业', social_organization: '社会组织', industry_association: '行业协会商会',
  platform_company: '平台企业', building: '楼宇', park: '园区', business_district: '商圈', market: '市场',
}
export const COVERAGE = { organization: '组织覆盖', work: '工作覆盖', none: '未覆盖' }
export const STATION_KIND = {
  warm_station: '暖新驿站', service_center: '党群服务中心', friendly_community: '友好社区',
  friendly_building: '友好楼宇', brothers_home: '小哥之家', check_in_point: '党员报到点',
}
export const STATION_STATUS = { active: '运行中', suspended: '暂停', closed: '已关闭' }
export const AMENITY = {
  water: '饮水', charging: '充电', battery_swap: '换电柜', microwave: '微波炉', rest: '休息座椅', toilet: '卫生间',
  first_aid: '急救药箱', legal_aid: '法律援助', heating: '取暖', cooling: '纳凉', wifi: '无线网络',
}
export const SUPPLY = { water: '饮用水', medicine: '常用药品', umbrella: '雨伞', charger: '充电宝', mask: '口罩' }
export const SEASON = {
  spring_jobs: '春风送岗', summer_cooling: '夏日送清凉', autumn_school_aid: '秋季助学', winter_warmth: '冬日送温暖',
}
export const APPEAL_CATEGORY = {
  rights: '权益保障', labour_protection: '劳动保护', legal: '法律咨询', housing: '住房', insurance: '社会保险',
  hazard: '隐患报告', enterprise_difficulty: '企业困难', suggestion: '建言献策', other: '其他',
}
export const APPEAL_STATUS = {
  submitted: '待受理', accepted: '已受理', assigned: '办理中', resolved: '已办结', closed: '已关闭', rejected: '不予受理',
}
export const APPEAL_ACTION = {
  submitted: '提交', accepted: '受理', accept: '受理', assigned: '分派', assign: '分派', resolved: '办结',
  resolve: '办结', rated: '评价', rate: '评价', reopened: '重新办理', reopen: '重新办理', rejected: '不予受理',
  reject: '不予受理', closed: '关闭', close: '关闭', overdue: '超期', escalated: '升级督办', merged: '合并',
  note: '备注', rerouted: '转办', routed: '自动分派',
}
export const TRANSFER_STATUS = {
  requested: '待审批', approved: '已开具介绍信', received: '已接收', completed: '已报到', rejected: '已退回',
  cancelled: '已撤销', expired: '介绍信过期',
}
export const TRANSFER_ACTION = {
  approve: '审批通过', receive: '接收', 'report-in': '确认报到', reject: '退回', cancel: '撤销',
}

export const LEDGER = { units: '单位台账', members: '党员台账', stations: '阵地台账' }
export const IMPORT_STATUS = { queued: '排队中', running: '导入中', done: '完成', failed: '失败' }
export const COVERAGE_BY = { division: '按区划', industry: '按行业', type: '按单位类型' }

export const ACTOR = { system: '系统', anonymous: '匿名' }

export const label = (table, key) => (key == null ? '—' : table[key] || key)
// Notification texts come as "中文 / English" (gateway/notifications.py): the console shows the Chinese.
export const chinese = (text) => text.split(/(?<=。)\/ | \/ /)[0]
export const percent = (rate) => `${(100 * (rate || 0)).toFixed(1)}%`
export const dateTime = (value) => (value ? new Date(value).toLocaleString('zh-CN', { hour12: false }) : '—')
