"""What pb shows people, in Chinese (zh-CN): problem documents, coverage tables, dead letters,
reports. --json output bypasses all of it and prints the API's own documents."""

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table

STATUS_TITLES = {
    400: "请求格式错误",
    401: "用户名或密码错误，或未登录",
    403: "超出权限范围",
    404: "未找到",
    405: "不支持该操作",
    409: "状态冲突",
    413: "文件过大",
    415: "不支持的文件类型",
    422: "字段值无效",
    429: "请求过于频繁，请稍后再试",
    500: "平台内部错误",
    502: "平台服务异常",
    503: "平台服务暂不可用，请稍后再试",
    504: "平台服务响应超时",
}

# Where a field sits in the request is the API's business; the operator wants its name.
REQUEST_PARTS = {"body", "query", "path", "header", "form", "file"}

ROLES = {
    "admin": "管理员",
    "operator": "区划操作员",
    "secretary": "党组织书记",
    "station_manager": "站点管理员",
    "worker": "新就业群体",
    "handler": "部门办理人员",
}

UNIT_TYPES = {
    "enterprise": "非公企业",
    "social_organization": "社会组织",
    "industry_association": "行业协会",
    "platform_company": "平台企业",
    "building": "商务楼宇",
    "park": "园区",
    "business_district": "商圈",
    "market": "市场",
}

BREAKDOWN_HEADERS = {"division": "区划", "industry": "行业", "type": "单位类型"}


def field_name(loc: Iterable) -> str:
    """["body", "holidays", 0] -> "holidays[0]"."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in REQUEST_PARTS:
        parts = parts[1:]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def problem_lines(problem: dict) -> list[str]:
    """A problem document as lines an operator reads: what went wrong, then each field."""
    status = problem.get("status")
    title = STATUS_TITLES.get(status) or problem.get("title") or "请求失败"
    lines = [f"平台拒绝了请求（{status} {title}）" if status else title]
    errors = problem.get("errors") or []
    detail = problem.get("detail")
    # A single field's detail repeats the field's own message: list the fields alone.
    if detail and not errors:
        lines.append(f"  {detail}")
    for error in errors:
        name = field_name(error.get("loc") or [])
        lines.append(f"  · 字段 {name}：{error.get('msg')}" if name else f"  · {error.get('msg')}")
    return lines


def as_json(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2)


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def coverage_table(total: dict, breakdown: dict | None, label: Callable[[dict], str]) -> Table:
    """One row per breakdown item (when asked for) and the division's total last; compact
    (two-line headers, one space between columns) so that it fits an 80-column terminal."""
    title = f"覆盖情况 · {total.get('division') or '全部区划'}"
    if total.get("as_of"):
        title += f" · 截至 {local_time(total['as_of'])}"
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    table.add_column(BREAKDOWN_HEADERS[breakdown["by"]] if breakdown else "范围", no_wrap=True)
    for header in ("单位数", "组织\n覆盖", "工作\n覆盖", "未覆盖", "组织\n覆盖率", "工作\n覆盖率", "单建\n单位", "单建率",
                   "应建\n未建"):
        table.add_column(header, justify="right")
    for item in breakdown["items"] if breakdown else []:
        table.add_row(label(item), *coverage_cells(item))
    table.add_row("合计", *coverage_cells(total), style="bold")
    return table


def coverage_cells(figures: dict) -> list[str]:
    return [str(figures["units"]), str(figures["organization_covered"]), str(figures["work_covered"]),
            str(figures["uncovered"]), percent(figures["organization_rate"]), percent(figures["work_rate"]),
            str(figures["standalone_units"]), percent(figures["standalone_rate"]), str(figures["should_establish"])]


def breakdown_label(by: str, industry_names: dict[str, str]) -> Callable[[dict], str]:
    """A unit type's or industry's Chinese name where known, else the code (a division's)."""
    names = UNIT_TYPES if by == "type" else industry_names if by == "industry" else {}

    def label(item: dict) -> str:
        code = item.get(by) or "-"
        return names.get(code, code)
    return label


def local_time(moment: str) -> str:
    return datetime.fromisoformat(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def dead_letters_table(service: str, items: list[dict]) -> Table:
    table = Table(title=f"死信 · {service} · {len(items)} 条")
    for header in ("消息 ID", "事件类型", "原队列", "尝试次数", "进入死信时间", "错误"):
        table.add_column(header, overflow="fold")
    for item in items:
        table.add_row(item.get("message_id") or "-", item.get("type") or "-", item.get("queue") or "-",
                      str(item.get("attempts") if item.get("attempts") is not None else "-"),
                      item.get("dead_lettered_at") or "-", shortened(item.get("error")))
    return table


def shortened(text: str | None, limit: int = 80) -> str:
    if not text:
        return "-"
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


RECONCILIATION_FIELDS = {
    "units": "单位数",
    "districts": "已核对区县",
    "drifted_counters": "偏差计数",
    "drifted_units": "偏差单位",
    "repaired": "已修复",
    "complete": "全部完成",
    "districts_left": "留待下次的区县",
    "longest_transaction_seconds": "最长事务（秒）",
    "seconds": "用时（秒）",
}


def key_value_table(title: str, document: dict, labels: dict[str, str]) -> Table:
    """Known fields under their Chinese labels first, anything else the API adds after them."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key in [*[k for k in labels if k in document], *[k for k in document if k not in labels]]:
        table.add_row(labels.get(key, key), cell(document[key]))
    return table


def cell(value: Any) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list):
        return "、".join(map(str, value)) or "无"
    return "-" if value is None else str(value)


def role_name(role: str) -> str:
    return ROLES.get(role, role)


def size(byte_count: int) -> str:
    if byte_count < 1024:
        return f"{byte_count} 字节"
    if byte_count < 1024 * 1024:
        return f"{byte_count / 1024:.1f} KB"
    return f"{byte_count / 1024 / 1024:.1f} MB"
