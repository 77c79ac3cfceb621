"""pb's commands without a platform: argument parsing, usage errors (exit 2), not signed in and
unreachable (exit 3). Driven through click's runner in-process; tests/test_cli.py runs the
installed executable against the real platform."""

import json
import socket
from datetime import datetime, timedelta, timezone

import click
import pytest
from click.testing import CliRunner

from pb_cli import credentials
from pb_cli.credentials import Credentials
from pb_cli.main import cli


@pytest.fixture(autouse=True)
def own_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for variable in ("PB_URL", "PB_TOKEN", "PB_TIMEOUT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), input=stdin, prog_name="pb")


def every_command(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))


COMMANDS = list(every_command(cli))


def test_the_commands_the_issue_asks_for_exist():
    assert {"login", "logout", "whoami", "coverage", "reconcile", "export", "template"} <= {c[0] for c in COMMANDS}
    assert {("dead-letters", "list"), ("dead-letters", "replay"), ("calendar", "load"), ("import", "units"),
            ("import", "members"), ("import", "stations"), ("import", "status")} <= set(COMMANDS)


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "pb")
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: pb")


def commands_printing_data() -> list[tuple[str, ...]]:
    groups = {name for name, command in cli.commands.items() if isinstance(command, click.Group)}
    return [c for c in COMMANDS if c[0] not in groups or len(c) == 2 if c != ("logout",)]


@pytest.mark.parametrize("command", commands_printing_data(), ids=" ".join)
def test_every_command_that_prints_data_has_json(command):
    assert "--json" in run(*command, "--help").output


@pytest.mark.parametrize("args", [
    ["dead-letters", "replay"],  # neither ids nor --all
    ["dead-letters", "replay", "--all", "abc"],  # both
    ["dead-letters", "list", "--limit", "0"],
    ["coverage", "--by", "street"],
    ["export", "units", "--by", "type", "-o", "units.xlsx"],  # --by is for coverage
    ["export", "units"],  # no -o
    ["export", "appeals", "-o", "a.xlsx"],
    ["template", "coverage", "-o", "t.xlsx"],
    ["import", "units", "missing.xlsx"],
    ["import", "units"],
    ["login", "--password-stdin"],  # from stdin, but as whom?
    ["calendar", "load", "missing.json", "--year", "2027"],
    ["calendar", "load", "--year", "1999", "-"],
    ["--timeout", "0", "whoami"],
    ["no-such-command"],
])
def test_usage_errors_exit_2(args):
    result = run(*args, stdin="")
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.output


def test_a_file_of_the_wrong_kind_is_a_usage_error(tmp_path):
    (tmp_path / "units.txt").write_text("not a workbook")
    result = run("import", "units", "units.txt")
    assert result.exit_code == 2 and "只能导入 .xlsx 或 .csv 文件" in result.output


@pytest.mark.parametrize("content, message", [
    ("{not json", "不是有效的 JSON"),
    ("[]", "应为 JSON 对象"),
    ('{"year": 2026, "holidays": []}', "与 --year 2027 不一致"),
])
def test_a_calendar_file_that_cannot_be_the_year_is_a_usage_error(tmp_path, content, message):
    (tmp_path / "2027.json").write_text(content)
    result = run("calendar", "load", "--year", "2027", "2027.json")
    assert result.exit_code == 2 and message in result.output


def test_not_signed_in_exits_3():
    result = run("whoami")
    assert result.exit_code == 3
    assert f"尚未登录 {credentials.DEFAULT_URL}" in result.output and "pb login" in result.output


def test_not_signed_in_to_another_platform_exits_3():
    credentials.save(Credentials(url="http://platform-a:8080", token="t", username="admin",
                                 expires_at=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()))
    result = run("whoami", "--url", "http://platform-b:8080")
    assert result.exit_code == 3 and "尚未登录 http://platform-b:8080" in result.output


def test_an_expired_sign_in_exits_3_without_asking_the_platform():
    credentials.save(Credentials(url="http://127.0.0.1:1", token="t", username="admin",
                                 expires_at=(datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()))
    result = run("coverage")
    assert result.exit_code == 3 and "登录已过期" in result.output


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_platform_exits_3(monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("PB_TOKEN", "a-token")
    result = run("coverage", "--url", url)
    assert result.exit_code == 3 and f"无法连接平台 {url}" in result.output

    as_json = CliRunner().invoke(cli, ["whoami", "--url", url, "--json"], prog_name="pb")
    assert as_json.exit_code == 3 and "无法连接平台" in as_json.stderr
    problem = json.loads(as_json.stdout)
    assert (problem["title"], problem["url"]) == ("cannot reach the platform", url)


def test_an_unreachable_platform_at_sign_in_exits_3():
    url = f"http://127.0.0.1:{closed_port()}"
    result = run("login", "--url", url, "-u", "admin", "--password-stdin", stdin="secret\n")
    assert result.exit_code == 3 and not credentials.credentials_path().exists()


def test_logout_when_not_signed_in():
    result = run("logout")
    assert result.exit_code == 0 and "本来就没有登录" in result.output
