// Files from the API (templates, errors workbooks, exports), fetched with the user's token and
// saved; a refusal is said in Chinese.
import { ElMessage } from 'element-plus'
import { download } from './api'

const REFUSED = { 403: '您的角色不能下载此文件', 404: '文件不存在，或不是您的导入', 429: '导出过于频繁，请稍后再试' }

export async function saveFile(path, query) {
  try {
    await download(path, query)
  } catch (error) {
    ElMessage.error(REFUSED[error.status] || `下载失败：${error.message}`)
  }
}
