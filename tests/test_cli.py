"""The command-line tool `pb` (cli/), driven as an operator drives it: the installed executable
run in a shell of its own (a private config folder, the platform's URL in PB_URL) against the
platform as `make run` starts it. Its parsing and formatting are tested in cli/tests."""

import csv
import json
import os
import stat
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
from python_calamine import CalamineWorkbook

from platform_testing import credit_code, wait_for
from tests.pii_search import cloud_event, publish_raw

pytestmark = pytest.mark.slow

PB = Path(sys.executable).parent / "pb"  # installed into the venv by `make`
# This file's own streets: no other test registers units there (test_e2e_ledgers picks 370113100-999).
STREET = "370113071"


@pytest.fixture
def pb(platform, tmp_path):
    """Runs `pb ARGS...` as a fresh shell would, with this test's own config folder."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PB_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), PB_URL=platform.gateway_url,
               COLUMNS="250")  # wide enough that rich folds no id in a table

    def run(*args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(PB), *args], input=stdin, capture_output=True, text=True, timeout=120,
                              env={**env, **extra_env}, cwd=tmp_path)

    run.config = tmp_path / "config" / "pb"
    return run


@pytest.fixture
def admin_pb(pb, platform):
    signed_in = pb("login", "--username", "admin", "--password-stdin", stdin=platform.admin_password + "\n")
    assert signed_in.returncode == 0, signed_in.stderr
    return pb


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def operator_of(platform, division: str) -> tuple[str, str]:
    username, password = f"cli-op-{uuid.uuid4().hex[:8]}", "operator-" + uuid.uuid4().hex
    with platform.client() as api:
        response = api.post("/users", json={"username": username, "password": password, "role": "operator",
                                            "scope": division})
        assert response.status_code == 201, response.text
    return username, password


def test_signing_in_and_out(pb, platform):
    refused = pb("whoami")
    assert refused.returncode == 3 and "pb login" in refused.stderr

    signed_in = ok(pb("login", "--username", "admin", "--password-stdin", stdin=platform.admin_password + "\n"))
    assert "admin（管理员）" in signed_in.stdout
    stored = pb.config / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(pb.config.stat().st_mode) == 0o700
    assert platform.admin_password not in stored.read_text()  # the token only

    me = json.loads(ok(pb("whoami", "--json")).stdout)
    assert (me["username"], me["role"]) == ("admin", "admin")
    assert f"平台：{platform.gateway_url}" in ok(pb("whoami")).stdout

    # PB_TOKEN is used instead of the stored sign-in.
    username, password = operator_of(platform, STREET)
    as_operator = json.loads(ok(pb("whoami", "--json", PB_TOKEN=platform.token(username, password))).stdout)
    assert (as_operator["username"], as_operator["scope"]) == (username, STREET)

    assert "已退出登录" in ok(pb("logout")).stdout
    assert not stored.exists()
    assert pb("whoami").returncode == 3


def test_a_refused_sign_in_is_reported_in_chinese_and_raw(pb, platform):
    username, _ = operator_of(platform, STREET)
    refused = pb("login", "-u", username, "--password-stdin", stdin="not-the-password\n")
    assert refused.returncode == 1
    assert "平台拒绝了请求（401" in refused.stderr
    raw = pb("login", "-u", username, "--password-stdin", "--json", stdin="not-the-password\n")
    assert raw.returncode == 1 and json.loads(raw.stdout)["status"] == 401
    assert not (pb.config / "credentials.json").exists()


def test_an_expired_or_revoked_token_asks_to_sign_in_again(pb):
    refused = pb("whoami", PB_TOKEN="not-a-token")
    assert refused.returncode == 3 and "pb login" in refused.stderr


def test_coverage_as_a_table_and_as_json(admin_pb, platform):
    street = "370113072"
    with platform.client() as api:
        units = []
        for community in ("001", "002"):
            response = api.post("/units", json={
                "credit_code": credit_code(street), "name": f"快递网点{community}", "type": "enterprise",
                "industry": "express", "division": street + community})
            assert response.status_code == 201, response.text
            units.append(response.json())
        instructor = api.post("/instructors", json={"name": "王指导员", "phone": "13912345678", "division": street})
        assert instructor.status_code == 201, instructor.text
        assigned = api.put(f"/units/{units[1]['id']}/instructor", json={"instructor_id": instructor.json()["id"]})
        assert assigned.status_code == 200, assigned.text

    document = json.loads(ok(admin_pb("coverage", "--division", street, "--json")).stdout)
    assert document["breakdown"] is None
    figures = document["coverage"]
    assert (figures["units"], figures["work_covered"], figures["uncovered"], figures["work_rate"]) == (2, 1, 1, 0.5)

    by_community = json.loads(ok(admin_pb("coverage", "--division", street, "--by", "division", "--json")).stdout)
    assert sorted(i["division"] for i in by_community["breakdown"]["items"]) == [street + "001", street + "002"]

    table = ok(admin_pb("coverage", "--division", street, "--by", "division")).stdout
    assert f"覆盖情况 · {street}" in table
    # 单位数, 组织覆盖, 工作覆盖, 未覆盖, 组织覆盖率, 工作覆盖率, 单建单位, 单建率, 应建未建
    assert table_rows(table)[street + "001"] == ["1", "0", "0", "1", "0.0%", "0.0%", "0", "0.0%", "0"]
    assert table_rows(table)[street + "002"] == ["1", "0", "1", "0", "0.0%", "100.0%", "0", "0.0%", "0"]
    assert table_rows(table)["合计"] == ["2", "0", "1", "1", "0.0%", "50.0%", "0", "0.0%", "0"]
    assert "非公企业" in table_rows(ok(admin_pb("coverage", "--division", street, "--by", "type")).stdout)
    with platform.client() as api:
        express = next(i["name"] for i in api.get("/industries").json()["items"] if i["code"] == "express")
    assert express in table_rows(ok(admin_pb("coverage", "--division", street, "--by", "industry")).stdout)


def table_rows(table: str) -> dict[str, list[str]]:
    """The rows of a compact table (no vertical rules), by their first cell."""
    lines = table.splitlines()
    rule = next(n for n, line in enumerate(lines) if set(line.strip()) == {"─"})
    return {cells[0]: cells[1:] for cells in (line.split() for line in lines[rule + 1:]) if cells}


def test_refusals_name_the_field_or_the_scope(pb, admin_pb, platform):
    invalid = admin_pb("coverage", "--division", "37x")
    assert invalid.returncode == 1
    assert "字段值无效" in invalid.stderr and "字段 division：" in invalid.stderr
    raw = admin_pb("coverage", "--division", "37x", "--json")
    assert raw.returncode == 1
    problem = json.loads(raw.stdout)
    assert problem["status"] == 422 and ["query", "division"] in [e["loc"] for e in problem["errors"]]

    username, password = operator_of(platform, STREET)
    token = platform.token(username, password)
    outside = pb("coverage", "--division", "370112", PB_TOKEN=token)
    assert outside.returncode == 1 and "超出权限范围" in outside.stderr
    assert pb("reconcile", PB_TOKEN=token).returncode == 1  # admins only
    assert json.loads(ok(pb("coverage", "--json", PB_TOKEN=token)).stdout)["coverage"]["division"] == STREET


def test_reconcile_reports_and_repairs(admin_pb):
    report = json.loads(ok(admin_pb("reconcile", "--report-only", "--json")).stdout)
    assert report["complete"] is True and report["repaired"] is False and report["districts"] >= 1
    table = ok(admin_pb("reconcile")).stdout
    assert "覆盖对账" in table and "全部完成" in table


def test_dead_letters_listed_and_replayed(admin_pb, platform):
    # Only the gateway consumes organization.events: a message that is no event is dead-lettered
    # there at once, and again each time it is replayed.
    not_an_event = cloud_event("organization", "unit.registered", {"id": 7})
    del not_an_event["source"]
    publish_raw(platform.amqp_uri, "organization.events", "unit.registered", json.dumps(not_an_event),
                not_an_event["id"])

    def listed() -> list[dict]:
        items = json.loads(ok(admin_pb("dead-letters", "list", "--service", "gateway", "--limit", "500",
                                       "--json")).stdout)
        return [item for item in items if item["message_id"] == not_an_event["id"]]

    item = wait_for(listed, what="the malformed message among the gateway's dead letters")[0]
    assert item["type"] == "unit.registered"
    table = ok(admin_pb("dead-letters", "list", "--service", "gateway", "--limit", "500")).stdout
    assert "死信 · gateway" in table and not_an_event["id"] in table

    replayed = ok(admin_pb("dead-letters", "replay", "--service", "gateway", not_an_event["id"]))
    assert "已重放 1 条死信" in replayed.stdout
    wait_for(listed, what="the replayed message dead-lettered again")
    assert json.loads(ok(admin_pb("dead-letters", "replay", "--service", "gateway", "no-such-id",
                                  "--json")).stdout) == {"replayed": 0}

    assert admin_pb("dead-letters", "replay", "--service", "gateway").returncode == 2  # ids or --all
    unknown = admin_pb("dead-letters", "list", "--service", "nobody")
    assert unknown.returncode == 1 and "字段 service：" in unknown.stderr


def test_a_years_holiday_calendar_is_loaded(admin_pb, tmp_path):
    # A year no other test's appeals or stations meet.
    year = 2099
    first_saturday = next(date(year, 9, day) for day in range(1, 8) if date(year, 9, day).weekday() == 5)
    schedule = {"year": year, "holidays": [(date(year, 10, 1) + timedelta(days=n)).isoformat() for n in range(7)]
                + [f"{year}-01-01"], "workdays": [first_saturday.isoformat()]}
    file = tmp_path / f"{year}.json"
    file.write_text(json.dumps(schedule))

    loaded = ok(admin_pb("calendar", "load", "--year", str(year), str(file)))
    assert f"已载入 {year} 年节假日安排：放假 8 天，调休上班 1 天" in loaded.stdout
    overrides = json.loads(ok(admin_pb("calendar", "show", "--json")).stdout)["overrides"]
    assert [o["workdays"] for o in overrides if o["year"] == year] == [[first_saturday.isoformat()]]
    assert f"{year} 年（管理员载入）" in ok(admin_pb("calendar", "show")).stdout

    a_weekday = next(date(year, 9, day) for day in range(1, 8) if date(year, 9, day).weekday() < 5)
    file.write_text(json.dumps({**schedule, "workdays": [a_weekday.isoformat()]}))
    refused = admin_pb("calendar", "load", "--year", str(year), str(file))
    assert refused.returncode == 1 and "字段 workdays：" in refused.stderr
    assert admin_pb("calendar", "load", "--year", str(year + 1), str(file)).returncode == 2  # not the file's year


def sheets(path: Path) -> dict[str, list[list]]:
    workbook = CalamineWorkbook.from_path(str(path))
    return {name: workbook.get_sheet_by_name(name).to_python() for name in workbook.sheet_names}


def test_a_ledger_filled_in_from_the_template_imports_with_a_progress_bar_and_gives_bad_rows_back(admin_pb, tmp_path):
    street = "370113073"
    ok(admin_pb("template", "units", "-o", "units-template.csv"))
    with (tmp_path / "units-template.csv").open(encoding="utf-8-sig", newline="") as template:
        headers = next(csv.reader(template))
    names = [header.rstrip("*") for header in headers]  # a required column's header ends in *
    assert {"统一社会信用代码", "单位名称", "区划代码"} <= set(names)

    def row(**cells) -> list:
        named = {"统一社会信用代码": credit_code(street), "单位类型": "非公企业", "所属行业": "快递",
                 "区划代码": street + "001", "从业人员数": 8, "是否规上": "否", **cells}
        return [named.get(name, "") for name in names]

    good = [row(单位名称=f"同城配送站{n}") for n in range(3)]
    bad = [row(单位名称="信用代码错", 统一社会信用代码="91370113MA3C0XXX1X"), row(单位名称="区划未登记", 区划代码="110101001001")]
    ledger = tmp_path / "单位台账.csv"
    with ledger.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([headers, *good, *bad])

    imported = admin_pb("import", "units", str(ledger))
    assert imported.returncode == 1, imported.stderr  # rows left out
    assert "导入单位台账" in imported.stderr and "100%" in imported.stderr  # the progress bar, at its end
    assert "5 行：导入 3，已存在 0，出错 2" in imported.stdout
    errors_file = tmp_path / "单位台账.errors.xlsx"
    assert f"出错的行已写入 {errors_file}" in imported.stderr
    rejected = next(iter(sheets(errors_file).values()))
    assert [r[rejected[0].index(headers[names.index("单位名称")])] for r in rejected[1:]] == ["信用代码错", "区划未登记"]

    # The same file again: nothing doubles, and the bad rows come back again.
    again = json.loads(admin_pb("import", "units", str(ledger), "--json").stdout)
    assert (again["status"], again["imported"], again["already_present"], again["rejected"]) == ("done", 0, 3, 2)
    assert again["errors_file"] == str(errors_file)

    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([headers, row(单位名称="改正后的网点")])
    submitted = json.loads(ok(admin_pb("import", "units", str(fixed), "--no-wait", "--json")).stdout)
    done = json.loads(ok(admin_pb("import", "status", submitted["id"], "--wait", "--json")).stdout)
    assert (done["status"], done["imported"], done["rejected"], done["errors_file"]) == ("done", 1, 0, None)
    assert not (tmp_path / "fixed.errors.xlsx").exists()
    assert submitted["id"] in ok(admin_pb("import", "list")).stdout

    assert json.loads(ok(admin_pb("coverage", "--division", street, "--json")).stdout)["coverage"]["units"] == 4


def test_ledgers_and_coverage_are_exported_to_workbooks(admin_pb, platform, tmp_path):
    street = "370113074"
    with platform.client() as api:
        for n in range(2):
            response = api.post("/units", json={"credit_code": credit_code(street), "name": f"导出网点{n}",
                                                "type": "enterprise", "industry": "express",
                                                "division": street + "001"})
            assert response.status_code == 201, response.text

    saved = json.loads(ok(admin_pb("export", "units", "--division", street, "-o", "units.xlsx", "--json")).stdout)
    assert saved == {"file": str(tmp_path / "units.xlsx"), "bytes": (tmp_path / "units.xlsx").stat().st_size}
    units = next(iter(sheets(tmp_path / "units.xlsx").values()))
    assert sorted(r[units[0].index("单位名称")] for r in units[1:]) == ["导出网点0", "导出网点1"]

    assert "已保存覆盖情况到 coverage.xlsx" in ok(admin_pb("export", "coverage", "--division", street, "--by", "type",
                                                        "-o", "coverage.xlsx")).stdout
    tables = sheets(tmp_path / "coverage.xlsx")
    assert list(tables) == ["总体", "按单位类型"]
    assert tables["总体"][1][tables["总体"][0].index("单位数")] == 2

    ok(admin_pb("template", "stations", "-o", "stations.xlsx"))
    assert "站点名称*" in next(iter(sheets(tmp_path / "stations.xlsx").values()))[0]
    assert admin_pb("export", "units", "--by", "type", "-o", "x.xlsx").returncode == 2
    assert not (tmp_path / "x.xlsx").exists()
