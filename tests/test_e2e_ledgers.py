"""Ledgers (台账) in and out, end to end on the platform as `make run` starts it: an operator
uploads workbooks that mix good rows with bad ones, gets every good row imported once and every
bad one back with its reason in their own columns, uploads the same file again without anything
doubling, and exports the ledgers and the coverage tables."""

import io
import uuid

import httpx
import pytest
from openpyxl import Workbook
from python_calamine import CalamineWorkbook

from platform_testing import credit_code, new_id_number, new_phone, wait_for

pytestmark = pytest.mark.slow

UNIT_HEADERS = ["统一社会信用代码", "单位名称", "单位类型", "所属行业", "区划代码", "从业人员数", "是否规上"]  # no 地址


def xlsx(headers: list, rows: list[list]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def sheet_rows(content: bytes, index: int = 0) -> list[list]:
    return CalamineWorkbook.from_filelike(io.BytesIO(content)).get_sheet_by_index(index).to_python()


def upload(api: httpx.Client, ledger: str, content: bytes, filename: str = "台账.xlsx") -> httpx.Response:
    return api.post("/imports", data={"ledger": ledger}, files={"file": (filename, content)})


def finished(api: httpx.Client, response: httpx.Response, timeout: float = 60) -> dict:
    assert response.status_code == 202, response.text
    assert response.headers["location"].endswith(response.json()["id"])
    url = f"/imports/{response.json()['id']}"
    wait_for(lambda: api.get(url).json()["status"] in ("done", "failed"), timeout=timeout, what="the import done")
    return api.get(url).json()


def street() -> str:
    """A street of the test's own in Jinan's Changqing district (registered on every platform)."""
    return f"370113{uuid.uuid4().int % 900 + 100:03d}"


def test_a_units_ledger_with_bad_rows_imports_every_good_row_once_and_gives_the_bad_ones_back(platform, sse):
    division = street()
    good = [[credit_code(division), f"快递网点{n}", "非公企业", "快递", division + f"{n:03d}", 12, "否"]
            for n in range(1, 6)]
    good.append([credit_code(division), "平台企业甲", "platform_company", "express", division + "006", "", "是"])
    bad = [
        ["91370113MA3C0XXX1X", "信用代码错", "非公企业", "快递", division + "001", 3, "否"],  # check character wrong
        [credit_code("110101"), "区划未登记", "非公企业", "快递", "110101001001", 3, "否"],  # Beijing: not registered
        [good[0][0], "同一信用代码", "非公企业", "快递", division + "001", 3, "否"],  # duplicates row 2
        [credit_code(division), "", "非公企业", "快递", division + "001", 3, "否"],  # no name
        [credit_code(division), "类型错", "个体户", "快递", division + "001", "很多", "否"],  # type and count wrong
    ]
    content = xlsx(UNIT_HEADERS, good + bad)
    stream = sse({"types": "import.*"})
    with platform.client() as api:
        job = finished(api, upload(api, "units", content))
        assert (job["status"], job["rows"], job["imported"], job["already_present"], job["rejected"],
                job["progress"]) == ("done", 11, 6, 0, 5, 1.0), job
        units = api.get("/units", params={"division": division, "limit": 100}).json()["items"]
        assert sorted(u["credit_code"] for u in units) == sorted(row[0] for row in good)
        coverage = api.get("/coverage", params={"division": division}).json()
        assert (coverage["units"], coverage["uncovered"]) == (6, 6)  # counted once per unit

        errors = api.get(job["errors_url"].removeprefix("/api/v1"))
        assert errors.status_code == 200 and errors.headers["content-type"].startswith(
            "application/vnd.openxmlformats")
        rows = sheet_rows(errors.content)
        assert rows[0][:2] == ["错误原因", "原行号"] and rows[0][2:] == UNIT_HEADERS
        reasons = {int(row[1]): row[0] for row in rows[1:]}
        assert sorted(reasons) == [8, 9, 10, 11, 12]
        assert "【统一社会信用代码】" in reasons[8]
        assert "【区划代码】区划未在平台登记" in reasons[9]
        assert "【统一社会信用代码】与文件中前面的行重复" in reasons[10] and "第 2 行" in reasons[10]
        assert reasons[11] == "【单位名称】必填，不能为空"
        assert "【单位类型】格式不正确" in reasons[12] and "【从业人员数】格式不正确" in reasons[12]
        assert rows[2][2:4] == bad[1][:2]  # the operator's own cells, as they wrote them

        again = finished(api, upload(api, "units", content))
        assert (again["imported"], again["already_present"], again["rejected"]) == (0, 6, 5)
        assert api.get("/coverage", params={"division": division}).json()["units"] == 6

        # The errors workbook, fixed and uploaded again: only what was wrong is imported now.
        fixed = [row[2:] for row in rows[1:]]
        fixed[0][0] = credit_code(division)
        fixed[1][4] = division + "001"
        fixed[3][1] = "补上名称"
        fixed[4][2], fixed[4][5] = "社会组织", 8
        third = finished(api, upload(api, "units", xlsx(rows[0], [[None, None, *row] for row in fixed])))
        # Row 10 repeated row 2's credit code: alone in this file, it is that unit, registered already.
        assert (third["imported"], third["already_present"], third["rejected"]) == (4, 1, 0)
        assert api.get("/coverage", params={"division": division}).json()["units"] == 10

    stream.wait_for(lambda e: e["type"] == "import.finished" and e["data"]["id"] == third["id"])
    first_finished = stream.wait_for(lambda e: e["type"] == "import.finished" and e["data"]["id"] == job["id"])
    assert (first_finished[0]["data"]["data"]["imported"], first_finished[0]["data"]["data"]["rejected"]) == (6, 5)


def test_an_upload_missing_a_required_column_is_refused_naming_it_and_imports_nothing(platform):
    division = street()
    content = xlsx(["单位名称", "单位类型", "所属行业", "区划代码"],
                   [["缺信用代码列", "非公企业", "快递", division + "001"]])
    with platform.client() as api:
        response = upload(api, "units", content)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == ["body", "file"]
        assert "统一社会信用代码" in response.json()["errors"][0]["msg"]
        assert api.get("/units", params={"division": division}).json()["items"] == []
        assert upload(api, "units", b"\x00\x01 not a ledger", "x.xlsx").status_code == 422
        assert upload(api, "ledgers", content).status_code == 422


def test_a_csv_in_gbk_as_excel_saves_it_imports_too(platform):
    division = street()
    lines = ["统一社会信用代码,单位名称,单位类型,所属行业,区划代码"] + [
        f"{credit_code(division)},网点{n},非公企业,快递,{division}00{n}" for n in range(1, 4)]
    with platform.client() as api:
        job = finished(api, upload(api, "units", "\r\n".join(lines).encode("gb18030"), "单位.csv"))
        assert (job["imported"], job["rejected"]) == (3, 0), job


def test_a_members_ledger_rejects_repeated_id_numbers_and_imports_the_rest_once(platform):
    division = street() + "001"
    with platform.client() as api:
        unit = api.post("/units", json={"credit_code": credit_code(division), "name": "骑手站", "type": "enterprise",
                                        "industry": "delivery", "division": division}).json()
        organization = api.post("/organizations", json={
            "name": "骑手支部", "kind": "branch", "formation": "standalone", "division": division,
            "unit_ids": [unit["id"]], "secretary": "李书记"}).json()
        repeated = new_id_number(division[:6])
        rows = [["张三", new_id_number(division[:6]), new_phone(), organization["id"], unit["id"], "入党积极分子",
                 "外卖骑手", "否"],
                ["李四", repeated, new_phone(), organization["id"], unit["id"], "入党申请人", "快递员", "是"],
                ["王五", repeated, new_phone(), organization["id"], unit["id"], "入党申请人", "快递员", "否"],
                ["赵六", new_id_number(division[:6]), "", "nosuchorganization", "", "入党申请人", "其他", "否"],
                ["钱七", "123", "", organization["id"], "", "入党申请人", "其他", "否"]]
        headers = ["姓名", "身份证号", "手机号", "所在党组织编号", "工作单位编号", "发展阶段", "职业", "流动党员"]
        content = xlsx(headers, rows)
        job = finished(api, upload(api, "members", content))
        assert (job["imported"], job["already_present"], job["rejected"]) == (2, 0, 3), job
        members = api.get("/members", params={"organization_id": organization["id"]}).json()["items"]
        assert sorted(m["name"] for m in members) == ["张三", "李四"]
        assert all("*" in m["id_number"] for m in members)

        reasons = {int(r[1]): r[0] for r in sheet_rows(api.get(f"/imports/{job['id']}/errors.xlsx").content)[1:]}
        assert sorted(reasons) == [4, 5, 6] and "与第 3 行相同" in reasons[4] and "【所在党组织编号】" in reasons[5]
        assert "【身份证号】" in reasons[6]
        errors_file = api.get(f"/imports/{job['id']}/errors.xlsx").content
        assert repeated.encode() not in api.get(f"/imports/{job['id']}").content
        assert sheet_rows(errors_file)[1][3] == repeated  # the operator's own file: theirs to fix

        again = finished(api, upload(api, "members", content))
        assert (again["imported"], again["already_present"], again["rejected"]) == (0, 2, 3), again
        assert len(api.get("/members", params={"organization_id": organization["id"]}).json()["items"]) == 2


def test_a_stations_ledger_imports_once(platform):
    division = street() + "001"
    headers = ["站点名称", "站点类型", "区划代码", "地址", "经度", "纬度", "开放时间", "服务设施", "容纳人数"]
    rows = [[f"暖新驿站{uuid.uuid4().hex[:4]}", "暖新驿站", division, "长清区某路1号", 116.75, 36.55, "Mo-Su 08:00-20:00",
             "饮水、充电", 10],
            ["坐标错", "暖新驿站", division, "长清区某路2号", 200, 36.55, "Mo-Su 08:00-20:00", "", 5]]
    with platform.client() as api:
        job = finished(api, upload(api, "stations", xlsx(headers, rows)))
        assert (job["imported"], job["rejected"]) == (1, 1), job
        again = finished(api, upload(api, "stations", xlsx(headers, rows)))
        assert (again["imported"], again["already_present"], again["rejected"]) == (0, 1, 1), again
        stations = api.get("/stations", params={"division": division}).json()["items"]
        assert [s["name"] for s in stations] == [rows[0][0]] and stations[0]["amenities"] == ["water", "charging"]


def test_another_operators_import_is_not_theirs_to_see(platform):
    division = street()
    with platform.client() as api:
        username = f"op{uuid.uuid4().hex[:6]}"
        assert api.post("/users", json={"username": username, "password": "pass-word-123", "role": "operator",
                                        "scope": "370102"}).status_code == 201
        job = finished(api, upload(api, "units", xlsx(UNIT_HEADERS, [
            [credit_code(division), "某单位", "非公企业", "快递", division + "001", 1, "否"]])))
    with platform.client(platform.token(username, "pass-word-123")) as other:
        assert other.get(f"/imports/{job['id']}").status_code == 404
        assert other.get(f"/imports/{job['id']}/errors.xlsx").status_code == 404
        assert job["id"] not in {i["id"] for i in other.get("/imports").json()["items"]}
        # Rows outside the operator's district are rejected, not imported.
        own = finished(other, upload(other, "units", xlsx(UNIT_HEADERS, [
            [credit_code(division), "越权单位", "非公企业", "快递", division + "002", 1, "否"]])))
        assert (own["imported"], own["rejected"]) == (0, 1)
        reasons = sheet_rows(other.get(f"/imports/{own['id']}/errors.xlsx").content)
        assert reasons[1][0] == "【区划代码】超出您的管辖范围"
        assert other.get("/exports/units.xlsx", params={"division": "370113"}).status_code == 403


def test_exports_give_the_ledger_and_the_coverage_tables(platform):
    division = street()
    rows = [[credit_code(division), f"导出单位{n}", "非公企业", "快递", division + "001", n, "否"] for n in range(3)]
    with platform.client() as api:
        finished(api, upload(api, "units", xlsx(UNIT_HEADERS, rows)))
        exported = api.get("/exports/units.xlsx", params={"division": division})
        assert exported.status_code == 200
        table = sheet_rows(exported.content)
        assert table[0][:2] == ["编号", "覆盖情况"] and "统一社会信用代码" in table[0]
        code_column = table[0].index("统一社会信用代码")
        assert sorted(r[code_column] for r in table[1:]) == sorted(r[0] for r in rows)
        assert {r[table[0].index("单位类型")] for r in table[1:]} == {"非公企业"}
        assert {r[table[0].index("所属行业")] for r in table[1:]} == {"快递"}

        coverage = api.get("/exports/coverage.xlsx", params={"division": division})
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(coverage.content))
        assert workbook.sheet_names == ["总体", "按区划", "按行业", "按单位类型"]
        total = workbook.get_sheet_by_name("总体").to_python()
        assert total[1][0] == division and total[1][3] == 3
        template = api.get("/templates/units.xlsx")
        assert sheet_rows(template.content)[0][0] == "统一社会信用代码*"
        assert api.get("/templates/members.csv").content.decode("utf-8-sig").startswith("姓名*,身份证号*")


def test_only_the_roles_that_keep_a_ledger_may_import_it(platform):
    content = xlsx(UNIT_HEADERS, [[credit_code("370113"), "某单位", "非公企业", "快递", "370113001001", 1, "否"]])
    member_headers = xlsx(["姓名", "身份证号", "所在党组织编号"], [["张三", "370113199001011234", "org"]])
    with platform.client() as api:
        def token(role: str, scope) -> str:
            username = f"{role.replace('_', '')}{uuid.uuid4().hex[:6]}"
            assert api.post("/users", json={"username": username, "password": "pass-word-123", "role": role,
                                            "scope": scope}).status_code == 201
            return platform.token(username, "pass-word-123")
        secretary = token("secretary", ["org-matrix"])
        refused = [token("worker", "m-1"), token("station_manager", ["s-1"]), token("handler", ["d-1"])]
    for caller in refused:
        with platform.client(caller) as other:
            for ledger in ("units", "members", "stations"):
                response = upload(other, ledger, content if ledger != "members" else member_headers)
                assert response.status_code == 403, response.text
            assert other.get("/exports/units.xlsx").status_code == 403
    with platform.client(secretary) as other:
        assert upload(other, "units", content).status_code == 403
        assert upload(other, "stations", content).status_code == 403
        job = finished(other, upload(other, "members", member_headers))
        assert (job["imported"], job["rejected"]) == (0, 1)  # not their organization: refused by the member service
