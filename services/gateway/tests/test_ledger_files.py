"""The ledgers as operators write them (gateway/ledgers/columns.py, workbook.py): pure, no platform."""

import io
import zipfile

import pytest
from openpyxl import load_workbook

from gateway.ledgers.columns import members_spec, stations_spec, units_spec
from gateway.ledgers.imports import prepare_rows
from gateway.ledgers.workbook import (UnreadableFile, errors_workbook, read_table, template, template_csv,
                                      workbook_bytes)
from platform_contracts.ledgers import RowProblem


def test_headers_are_found_by_their_usual_names_in_any_order_and_missing_required_ones_are_named():
    spec = units_spec()
    columns, missing = spec.header_map(["单位地址", "企业名称", "信用代码", "行业", "备注"])
    assert sorted(c.field for c in columns.values()) == ["address", "credit_code", "industry", "name"]
    assert missing == ["单位类型", "区划代码"]
    assert spec.header_map(["统一社会信用代码*", "单位名称", "单位类型", "所属行业", "区划代码"])[1] == []


def test_a_row_reads_chinese_labels_codes_numbers_and_yes_no_and_names_what_it_cannot_read():
    spec = units_spec({"快递": "express"})
    columns, _ = spec.header_map(["统一社会信用代码", "单位名称", "单位类型", "所属行业", "区划代码", "从业人员数", "是否规上"])
    data, errors = spec.read_row([" 91370113ma3c0xxx1k ", "网点", "非公企业", "快递", 370113001001.0, "1,200", "是"],
                                 columns)
    assert errors == []
    assert data == {"credit_code": "91370113MA3C0XXX1K", "name": "网点", "type": "enterprise", "industry": "express",
                    "division": "370113001001", "employees": 1200, "above_scale": True}
    _, errors = spec.read_row(["", "网点", "个体户", "快递", "370113001001", "很多", "也许"], columns)
    assert [(e.field, e.problem) for e in errors] == [
        ("type", RowProblem.invalid), ("employees", RowProblem.invalid), ("above_scale", RowProblem.invalid),
        ("credit_code", RowProblem.missing)]
    assert spec.error_text(errors).startswith("【单位类型】格式不正确：应为以下之一：非公企业、")


def test_nested_fields_lists_and_dates_are_read():
    spec = stations_spec()
    columns, _ = spec.header_map(["站点名称", "站点类型", "区划代码", "地址", "经度", "纬度", "开放时间", "服务设施"])
    data, errors = spec.read_row(["驿站", "小哥之家", "370113001001", "某路", "116.75", 36.55, "24/7", "饮水，充电、wifi"],
                                 columns)
    assert errors == []
    assert data["location"] == {"lng": 116.75, "lat": 36.55} and data["amenities"] == ["water", "charging", "wifi"]
    assert spec.header_of("location.lat") == "纬度"
    members = members_spec()
    columns, _ = members.header_map(["姓名", "身份证号", "所在党组织编号", "入党日期"])
    data, _ = members.read_row(["张三", "37011319900101123x", "org1", "2015年7月1日"], columns)
    assert data["joined_on"] == "2015-07-01" and data["id_number"] == "37011319900101123X"


def test_a_repeated_key_in_the_file_is_rejected_naming_the_first_row_and_blank_rows_are_skipped():
    table = [["统一社会信用代码", "单位名称", "单位类型", "所属行业", "区划代码"],
             ["91370113MA3C0XXX1K", "甲", "非公企业", "express", "370113001001"],
             [None, "", None, None, None],
             ["91370113MA3C0XXX1K", "乙", "非公企业", "express", "370113001001"]]
    rows = prepare_rows(units_spec(), table)
    assert [(r.row, [e.problem for e in r.errors]) for r in rows] == [(2, []), (4, [RowProblem.duplicate_in_file])]
    assert rows[1].errors[0].detail == "与第 2 行相同"


def test_csv_is_read_as_utf8_or_as_the_gb18030_excel_saves():
    text = "单位名称,区划代码\r\n网点,370113001001\r\n"
    for encoding in ("utf-8-sig", "utf-8", "gb18030"):
        assert read_table(text.encode(encoding), "a.csv") == [["单位名称", "区划代码"], ["网点", "370113001001"]]
    with pytest.raises(UnreadableFile):
        read_table(b"PK\x03\x04 broken", "a.xlsx")
    with pytest.raises(UnreadableFile):
        read_table(b"", "a.csv")


def test_templates_carry_the_headers_with_required_ones_marked_and_a_guide():
    workbook = load_workbook(io.BytesIO(template(units_spec())))
    assert workbook.sheetnames == ["单位台账", "填写说明"]
    assert [c.value for c in workbook["单位台账"][1]][:2] == ["统一社会信用代码*", "单位名称*"]
    assert read_table(template_csv(members_spec()), "m.csv")[0][:2] == ["姓名*", "身份证号*"]


def test_the_errors_workbook_puts_the_reason_and_row_in_front_of_the_operators_own_cells():
    content = errors_workbook("单位台账", ["单位名称", "区划代码"], [(7, ["网点", "110101001001"], "【区划代码】区划未在平台登记")])
    assert read_table(content, "e.xlsx") == [["错误原因", "原行号", "单位名称", "区划代码"],
                                             ["【区划代码】区划未在平台登记", 7, "网点", "110101001001"]]


def test_formula_injection_in_exports_is_written_as_text_and_control_characters_are_dropped():
    """A unit named "=HYPERLINK(...)" must not become a formula in the operator's Excel."""
    content = workbook_bytes([("单位台账", ["单位名称"], [["=HYPERLINK(\"http://evil\",\"点我\")"], ["坏\x00字\x07符"]])])
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet
    workbook = load_workbook(io.BytesIO(content))
    assert workbook.active["A2"].data_type == "s" and workbook.active["A2"].value.startswith("=HYPERLINK")
    assert workbook.active["A3"].value == "坏字符"


def test_exports_are_limited_per_account_with_a_retry_after():
    from types import SimpleNamespace

    from gateway.auth import Principal
    from gateway.problems import ApiProblem
    from gateway.routes.ledgers import _limit_exports
    from platform_contracts.actors import Actor

    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(
        settings=SimpleNamespace(exports_per_user="2/hour"))))
    caller = Principal(id="u-export-limit", actor=Actor.parse({"username": "op", "role": "operator", "scope": "3701"}))
    _limit_exports(request, caller)
    _limit_exports(request, caller)
    with pytest.raises(ApiProblem) as refused:
        _limit_exports(request, caller)
    assert refused.value.status == 429 and int(refused.value.headers["Retry-After"]) > 0
    _limit_exports(request, Principal(id="u-other", actor=caller.actor))  # another account is not held back


def test_an_imports_progress_reaches_only_whoever_started_it_and_admins():
    from datetime import datetime, timezone

    from gateway.auth import Principal
    from gateway.event_log import LogEntry, filter_keys
    from gateway.ledgers.imports import import_event
    from gateway.stream_filter import EventFilter
    from platform_contracts.actors import Actor

    def principal(user_id, role, scope):
        return Principal(id=user_id, actor=Actor.parse({"username": user_id, "role": role, "scope": scope}))
    job = {"_id": "a" * 32, "ledger": "members", "status": "running", "rows": 10, "imported": 3, "already_present": 0,
           "rejected": 1, "next_batch": 1, "batches": 2, "created_by": "u-secretary",
           "created_at": datetime.now(timezone.utc)}
    envelope = import_event("import.progressed", job, "gateway").to_json_dict()
    entry = LogEntry(seq=1, type=envelope["type"], division=None, envelope=envelope)
    importer = principal("u-secretary", "secretary", ["org-1"])
    assert envelope["data"]["progress"] == 0.5
    assert EventFilter(reader=importer).matches(entry)
    assert EventFilter(reader=principal("u-admin", "admin", None)).matches(entry)
    assert not EventFilter(reader=principal("u-operator", "operator", "3701")).matches(entry)
    assert not EventFilter(reader=principal("u-other-secretary", "secretary", ["org-1"])).matches(entry)
    # A resuming stream's query finds it for the importer, whatever their role.
    query = EventFilter(reader=importer).log_query()
    assert set(query["type_keys"]["$in"]) & set(filter_keys(envelope)["type_keys"])
