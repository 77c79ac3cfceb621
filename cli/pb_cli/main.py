"""pb: the platform's command-line tool for operators and administrators.

Exit codes: 0 done; 1 the platform refused or the work failed; 2 usage error; 3 the platform
cannot be reached, or nobody is signed in (or the sign-in expired)."""

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from . import __version__, credentials, render
from .client import API_PREFIX, ApiRefused, NotSignedIn, PbError, Platform
from .credentials import Credentials

LEDGERS = ("units", "members", "stations")
LEDGER_NAMES = {"units": "单位台账", "members": "党员台账", "stations": "站点台账", "coverage": "覆盖情况"}
SPREADSHEET_TYPES = {".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                     ".csv": "text/csv"}
# How often a waiting import asks for its progress: often enough for a live bar, at most a
# request a second per operator.
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 0.2, 1.0
JSON_MODE = "pb.json"


class PbGroup(click.Group):
    """Reports every PbError once, readably on stderr (and as JSON on stdout under --json),
    and exits with its code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PbError as error:
            for line in error_lines(error):
                click.echo(line, err=True)
            if ctx.meta.get(JSON_MODE):
                click.echo(render.as_json(error.problem))
            ctx.exit(error.exit_code)


def error_lines(error: PbError) -> list[str]:
    return render.problem_lines(error.problem) if isinstance(error, ApiRefused) else [error.message]


def remember_json(ctx: click.Context, _param, value: bool) -> bool:
    if value:
        ctx.meta[JSON_MODE] = True  # shared with every context of the run: errors print as JSON too
    return value


json_option = click.option("--json", "as_json", is_flag=True, callback=remember_json,
                           help="输出 JSON（平台的原始文档），供脚本使用；出错时输出原始问题文档。")
url_option = click.option("--url", envvar="PB_URL", metavar="URL",
                          help=f"平台地址（环境变量 PB_URL；默认为登录时的地址，或 {credentials.DEFAULT_URL}）。")
division_option = click.option("--division", metavar="CODE", help="区划代码前缀，如 370113（区）、370113001（街道）。")


@click.group(cls=PbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, envvar="PB_TIMEOUT",
              help="等待平台应答的秒数（环境变量 PB_TIMEOUT）。")
@click.version_option(__version__, prog_name="pb")
@click.pass_context
def cli(ctx: click.Context, timeout: float):
    """新兴领域党建平台命令行工具：登录、覆盖情况、台账导入导出、死信、对账、节假日安排。

    \b
    退出码：0 成功；1 平台拒绝或执行失败；2 用法错误；3 无法连接平台或未登录。
    """
    ctx.ensure_object(dict)["timeout"] = timeout


def connect(url: str | None, *, signed_in: bool = True) -> Platform:
    """The platform to talk to: --url or PB_URL, else the one signed in to, else the default;
    with the token PB_TOKEN gives, else the stored sign-in for that platform."""
    ctx = click.get_current_context()
    stored = credentials.load()
    url = credentials.normalized(url or (stored.url if stored else credentials.DEFAULT_URL))
    token = None
    if signed_in:
        token = os.environ.get(credentials.TOKEN_ENV) or stored_token(stored, url)
    platform = Platform(url, token, timeout=ctx.obj["timeout"], transport=ctx.obj.get("transport"))
    ctx.call_on_close(platform.close)
    return platform


def stored_token(stored: Credentials | None, url: str) -> str:
    if stored is None or credentials.normalized(stored.url) != url:
        raise NotSignedIn(f"尚未登录 {url}：请先运行 pb login --url {url}")
    if stored.expired():
        raise NotSignedIn(f"{url} 的登录已过期：请重新运行 pb login")
    return stored.token


def stdout() -> Console:
    return Console(highlight=False)


# ---- signing in -----------------------------------------------------------------------------

@cli.command()
@url_option
@click.option("--username", "-u", help="用户名；不给出时提示输入。")
@click.option("--password-stdin", is_flag=True, help="从标准输入读取密码（一行），供脚本使用；需同时给出 --username。")
@json_option
def login(url, username, password_stdin, as_json):
    """登录平台，令牌保存在 $XDG_CONFIG_HOME/pb（默认 ~/.config/pb），仅本人可读。"""
    if password_stdin and not username:
        raise click.UsageError("--password-stdin 需要同时给出 --username")
    username = username or click.prompt("用户名")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("标准输入中没有密码")
    else:
        password = click.prompt("密码", hide_input=True)
    platform = connect(url, signed_in=False)
    token = platform.call("POST", "/auth/token", json={"username": username, "password": password}, login=True)
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=token["expires_in"])
    user = platform.call("GET", "/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    path = credentials.save(Credentials(url=platform.url, token=token["access_token"], username=user["username"],
                                        expires_at=expires_at.isoformat(timespec="seconds")))
    if as_json:
        click.echo(render.as_json({"url": platform.url, "user": user, "expires_at": expires_at.isoformat()}))
        return
    click.echo(f"已登录 {platform.url}：{user['username']}（{render.role_name(user['role'])}），"
               f"令牌有效至 {expires_at.astimezone():%Y-%m-%d %H:%M}，保存在 {path}")


@cli.command()
def logout():
    """退出登录：删除保存的令牌（平台不收回令牌，它在到期前仍然有效）。"""
    if credentials.forget():
        click.echo("已退出登录")
    else:
        click.echo("本来就没有登录")
    if os.environ.get(credentials.TOKEN_ENV):
        click.echo(f"注意：环境变量 {credentials.TOKEN_ENV} 仍然设置着，命令会继续使用它", err=True)


@cli.command()
@url_option
@json_option
def whoami(url, as_json):
    """当前登录的账号：用户名、角色和范围（GET /me）。"""
    platform = connect(url)
    user = platform.call("GET", "/me")
    if as_json:
        click.echo(render.as_json(user))
        return
    scope = user.get("scope")
    scope_text = "、".join(scope) if isinstance(scope, list) else (scope or "全部")
    click.echo(f"{user['username']}（{render.role_name(user['role'])}），范围：{scope_text}，平台：{platform.url}")


# ---- coverage -------------------------------------------------------------------------------

@cli.command()
@url_option
@division_option
@click.option("--by", type=click.Choice(["division", "industry", "type"]),
              help="再按下级区划、行业或单位类型分列。")
@json_option
def coverage(url, division, by, as_json):
    """覆盖情况汇总表（两个覆盖：组织覆盖率、工作覆盖率、单建率，应建未建数）。

    --json 输出 {"coverage": GET /coverage 的文档, "breakdown": GET /coverage/breakdown 的文档或 null}。
    """
    platform = connect(url)
    total = platform.call("GET", "/coverage", params=without_none(division=division))
    breakdown = platform.call("GET", "/coverage/breakdown", params=without_none(by=by, division=division)) \
        if by else None
    if as_json:
        click.echo(render.as_json({"coverage": total, "breakdown": breakdown}))
        return
    industry_names = {}
    if by == "industry":
        industry_names = {i["code"]: i["name"] for i in platform.call("GET", "/industries")["items"]}
    stdout().print(render.coverage_table(total, breakdown, render.breakdown_label(by or "division", industry_names)))


@cli.command()
@url_option
@click.option("--report-only", is_flag=True, help="只报告偏差，不修复（repair=false）。")
@json_option
def reconcile(url, report_only, as_json):
    """从头重新统计覆盖计数并修复偏差（管理员）。未能核对完所有区县时退出码为 1。"""
    platform = connect(url)
    report = platform.call("POST", "/coverage/reconcile", params={"repair": str(not report_only).lower()})
    if as_json:
        click.echo(render.as_json(report))
    else:
        stdout().print(render.key_value_table("覆盖对账", report, render.RECONCILIATION_FIELDS))
    if report.get("complete") is False:
        click.echo("对账没有完成：留下的区县会在下次对账时核对", err=True)
        sys.exit(1)


# ---- dead letters ---------------------------------------------------------------------------

@cli.group("dead-letters")
def dead_letters():
    """死信：服务多次处理失败而放弃的事件（管理员）。"""


service_option = click.option("--service", default="organization", show_default=True,
                              help="哪个服务的死信：organization、member、service-station、appeal，或 gateway。")


@dead_letters.command("list")
@url_option
@service_option
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="最多列出多少条。")
@json_option
def list_dead_letters(url, service, limit, as_json):
    """列出一个服务的死信（只查看，不取走）。"""
    items = connect(url).call("GET", "/admin/dead-letters", params={"service": service, "limit": limit})["items"]
    if as_json:
        click.echo(render.as_json(items))
    elif items:
        stdout().print(render.dead_letters_table(service, items))
    else:
        click.echo(f"{service} 没有死信")


@dead_letters.command("replay")
@url_option
@service_option
@click.option("--all", "replay_all", is_flag=True, help="重放该服务的全部死信。")
@click.argument("message_ids", nargs=-1, metavar="[MESSAGE_ID]...")
@json_option
def replay_dead_letters(url, service, replay_all, message_ids, as_json):
    """把死信送回原队列重新处理：给出消息 ID，或用 --all 重放全部。"""
    if bool(message_ids) == replay_all:
        raise click.UsageError("请给出要重放的消息 ID，或使用 --all（二者选一）")
    body = None if replay_all else {"message_ids": list(message_ids)}
    result = connect(url).call("POST", "/admin/dead-letters/replay", params={"service": service}, json=body)
    if as_json:
        click.echo(render.as_json(result))
        return
    click.echo(f"已重放 {result['replayed']} 条死信（{service}）")
    if message_ids and result["replayed"] < len(message_ids):
        click.echo(f"有 {len(message_ids) - result['replayed']} 个消息 ID 不在死信队列中", err=True)


# ---- the holiday calendar -------------------------------------------------------------------

@cli.group()
def calendar():
    """节假日安排（国务院办公厅每年公布的放假和调休）。"""


@calendar.command("show")
@url_option
@json_option
def show_calendar(url, as_json):
    """日历覆盖的年份，以及管理员载入的年份。"""
    document = connect(url).call("GET", "/calendar")
    if as_json:
        click.echo(render.as_json(document))
        return
    click.echo(f"内置日历覆盖 {document['covered_from']} 至 {document['covered_until']}")
    for override in document["overrides"]:
        click.echo(f"{override['year']} 年（管理员载入）：放假 {len(override['holidays'])} 天，"
                   f"调休上班 {len(override['workdays'])} 天")


@calendar.command("load")
@url_option
@click.option("--year", type=click.IntRange(2004, 2100), required=True, help="安排所属的年份。")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@json_option
def load_calendar(url, year, file, as_json):
    """载入一年的节假日安排（管理员），替换平台对该年的认识。

    \b
    FILE 为 JSON（- 表示标准输入）：
      {"year": 2027, "holidays": ["2027-01-01", ...], "workdays": ["2027-02-06", ...]}
    holidays 为全部放假日期（含周末和调休放假），workdays 为调休上班的周六、周日；year 可省略。
    """
    try:
        schedule = json.load(file)
    except ValueError as exc:
        raise click.BadParameter(f"不是有效的 JSON：{exc}", param_hint="FILE") from exc
    if not isinstance(schedule, dict):
        raise click.BadParameter('应为 JSON 对象 {"holidays": [...], "workdays": [...]}', param_hint="FILE")
    if schedule.setdefault("year", year) != year:
        raise click.BadParameter(f"文件中的 year 为 {schedule['year']}，与 --year {year} 不一致", param_hint="FILE")
    loaded = connect(url).call("PUT", f"/calendar/{year}", json=schedule)
    if as_json:
        click.echo(render.as_json(loaded))
        return
    click.echo(f"已载入 {year} 年节假日安排：放假 {len(loaded['holidays'])} 天，调休上班 {len(loaded['workdays'])} 天")


# ---- Excel ledgers --------------------------------------------------------------------------

@cli.group("import")
def import_ledger():
    """导入台账（.xlsx 或 .csv）：平台在后台逐行导入，出错的行写回一个工作簿。

    \b
    pb import units 单位台账.xlsx      导入并显示进度；有出错的行时下载 单位台账.errors.xlsx，退出码 1
    pb import status ID --wait        查看（并等待）一次导入
    pb import list                    最近的导入
    """


def import_command(ledger: str) -> click.Command:
    @click.command(ledger, help=f"导入{LEDGER_NAMES[ledger]}。FILE 为 .xlsx 或 .csv，列名与模板（pb template {ledger}）一致。")
    @url_option
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--wait/--no-wait", default=True, show_default=True,
                  help="等待导入完成并显示进度条；--no-wait 只提交，打印导入 ID。")
    @json_option
    def command(url, file: Path, wait, as_json):
        content_type = SPREADSHEET_TYPES.get(file.suffix.lower())
        if content_type is None:
            raise click.BadParameter("只能导入 .xlsx 或 .csv 文件", param_hint="FILE")
        platform = connect(url)
        with file.open("rb") as upload:
            record = platform.call("POST", "/imports", data={"ledger": ledger},
                                   files={"file": (file.name, upload, content_type)})
        if not wait:
            if as_json:
                click.echo(render.as_json({**record, "errors_file": None}))
            else:
                click.echo(f"已提交导入 {record['id']}（{import_state(record)}）：pb import status {record['id']} --wait 查看进度")
            return
        finish_import(platform, follow_import(platform, record, as_json), file.with_name(f"{file.stem}.errors.xlsx"),
                      as_json)

    return command


for _ledger in LEDGERS:
    import_ledger.add_command(import_command(_ledger))


@import_ledger.command("status")
@url_option
@click.argument("import_id", metavar="ID")
@click.option("--wait", is_flag=True, help="等待导入完成，显示进度条。")
@click.option("-o", "--errors-output", type=click.Path(dir_okay=False, path_type=Path),
              help="出错行工作簿的保存位置（默认：当前目录下的 <原文件名>.errors.xlsx）。")
@json_option
def import_status(url, import_id, wait, errors_output, as_json):
    """查看一次导入：进度和各项计数；完成且有出错的行时下载出错行工作簿，退出码 1。"""
    platform = connect(url)
    record = platform.call("GET", f"/imports/{import_id}")
    if wait:
        record = follow_import(platform, record, as_json)
    elif record["status"] in ("queued", "running"):
        if as_json:
            click.echo(render.as_json({**record, "errors_file": None}))
        else:
            click.echo(f"导入 {record['id']}：{import_state(record)}，进度 {render.percent(record['progress'])}")
        return
    # The file's own name only: the platform's record names no folder of ours.
    default = Path.cwd() / f"{Path(Path(record['filename']).name).stem}.errors.xlsx"
    finish_import(platform, record, errors_output or default, as_json)


@import_ledger.command("list")
@url_option
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="最多列出多少次。")
@json_option
def list_imports(url, limit, as_json):
    """最近的导入，新的在前（管理员看到所有人的）。"""
    items = connect(url).call("GET", "/imports", params={"limit": limit})["items"]
    if as_json:
        click.echo(render.as_json(items))
        return
    # Two lines each rather than a table: the 32-character ids leave a table no room in 80 columns.
    for item in items:
        click.echo(f"{item['id']}  {import_state(item)}  开始于 {render.local_time(item['created_at'])}")
        click.echo(f"  {LEDGER_NAMES[item['ledger']]} {item['filename']}，{import_counts(item)}")
    if not items:
        click.echo("还没有导入")


IMPORT_STATES = {"queued": "排队中", "running": "导入中", "done": "已完成", "failed": "失败"}


def import_state(record: dict) -> str:
    return IMPORT_STATES.get(record["status"], record["status"])


def follow_import(platform: Platform, record: dict, as_json: bool) -> dict:
    """Polls the import until it is done or failed, with a progress bar on stderr (none under
    --json). Ctrl-C stops the waiting, not the import."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=as_json)
    interval = POLL_FIRST_SECONDS
    try:
        with progress:
            task = progress.add_task(f"导入{LEDGER_NAMES.get(record['ledger'], record['ledger'])}", total=1.0,
                                     counts="")
            while True:
                progress.update(task, completed=record["progress"], counts=import_counts(record))
                if record["status"] not in ("queued", "running"):
                    return record
                time.sleep(interval)
                interval = min(interval * 1.5, POLL_MAX_SECONDS)
                record = platform.call("GET", f"/imports/{record['id']}")
    except KeyboardInterrupt:
        click.echo(f"\n不再等待；导入仍在平台上进行：pb import status {record['id']} --wait", err=True)
        sys.exit(130)


def import_counts(record: dict) -> str:
    rows = "?" if record.get("rows") is None else record["rows"]
    return f"{rows} 行：导入 {record['imported']}，已存在 {record['already_present']}，出错 {record['rejected']}"


def finish_import(platform: Platform, record: dict, errors_file: Path, as_json: bool) -> None:
    """Reports a finished import; the rows that failed come back as a workbook beside the
    operator's file, and the exit code is 1 while any row is not in."""
    saved = None
    if record["status"] == "done" and record["rejected"]:
        platform.download(record["errors_url"].removeprefix(API_PREFIX), errors_file)
        saved = errors_file
    if as_json:
        click.echo(render.as_json({**record, "errors_file": str(saved) if saved else None}))
    elif record["status"] == "failed":
        click.echo(f"导入 {record['id']} 失败：{record.get('error') or '原因不明'}", err=True)
    else:
        click.echo(f"导入 {record['id']} {import_state(record)}：{import_counts(record)}")
        if saved:
            click.echo(f"出错的行已写入 {saved}：改正后重新导入即可（已导入的行不会重复导入）", err=True)
    if record["status"] == "failed" or saved:
        sys.exit(1)


@cli.command()
@url_option
@click.argument("ledger", type=click.Choice([*LEDGERS, "coverage"]))
@division_option
@click.option("--by", type=click.Choice(["division", "industry", "type"]),
              help="仅用于 coverage：只要按下级区划、行业或单位类型分列的一张表（默认三张都要）。")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=True,
              help="保存到的 .xlsx 文件。")
@json_option
def export(url, ledger, division, by, output, as_json):
    """导出台账（units、members、stations）或覆盖情况表（coverage）为 .xlsx。"""
    if by and ledger != "coverage":
        raise click.UsageError("--by 只用于 pb export coverage")
    size = connect(url).download(f"/exports/{ledger}.xlsx", output, params=without_none(division=division, by=by))
    saved(size, output, LEDGER_NAMES[ledger], as_json)


@cli.command()
@url_option
@click.argument("ledger", type=click.Choice(LEDGERS))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=True,
              help="保存到的文件。")
@click.option("--format", "file_format", type=click.Choice(["xlsx", "csv"]),
              help="模板格式；默认按 -o 的扩展名（.csv 为 csv，其余为 xlsx）。")
@json_option
def template(url, ledger, output, file_format, as_json):
    """下载台账导入模板（列名为中文，与导入时一致）。"""
    file_format = file_format or ("csv" if output.suffix.lower() == ".csv" else "xlsx")
    size = connect(url).download(f"/templates/{ledger}.{file_format}", output)
    saved(size, output, f"{LEDGER_NAMES[ledger]}模板", as_json)


def saved(size: int, output: Path, what: str, as_json: bool) -> None:
    if as_json:
        click.echo(render.as_json({"file": str(output.resolve()), "bytes": size}))
    else:
        click.echo(f"已保存{what}到 {output}（{render.size(size)}）")


def without_none(**params) -> dict:
    return {key: value for key, value in params.items() if value is not None}


def main() -> None:
    cli(prog_name="pb")
