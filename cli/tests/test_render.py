"""What pb prints for people: problem documents and tables, in Chinese."""

import io

from rich.cells import cell_len
from rich.console import Console

from pb_cli import render


def rendered(table) -> str:
    output = io.StringIO()
    Console(width=80, file=output).print(table)
    return output.getvalue()


def test_field_names_leave_out_where_the_field_was_sent():
    assert render.field_name(["body", "credit_code"]) == "credit_code"
    assert render.field_name(["query", "division"]) == "division"
    assert render.field_name(["body", "holidays", 0]) == "holidays[0]"
    assert render.field_name(["body", "location", "lng"]) == "location.lng"
    assert render.field_name(["body"]) == "body"  # the body as a whole
    assert render.field_name([]) == ""


def test_a_validation_problem_lists_each_field():
    lines = render.problem_lines({
        "type": "https://partybuilding.example/problems/422", "title": "Invalid field values", "status": 422,
        "detail": "body.credit_code: bad check character; body.division: unknown division",
        "errors": [{"loc": ["body", "credit_code"], "msg": "bad check character"},
                   {"loc": ["body", "division"], "msg": "unknown division"}]})
    assert lines == ["平台拒绝了请求（422 字段值无效）", "  · 字段 credit_code：bad check character",
                     "  · 字段 division：unknown division"]


def test_a_problem_without_fields_shows_its_detail():
    lines = render.problem_lines({"status": 409, "title": "State conflict", "detail": "the transfer was rejected"})
    assert lines == ["平台拒绝了请求（409 状态冲突）", "  the transfer was rejected"]
    assert render.problem_lines({"status": 418, "title": "I'm a teapot"})[0] == "平台拒绝了请求（418 I'm a teapot）"


def figures(**counts) -> dict:
    base = {"units": 0, "organization_covered": 0, "work_covered": 0, "uncovered": 0, "organization_rate": 0.0,
            "work_rate": 0.0, "standalone_units": 0, "standalone_rate": 0.0, "should_establish": 0}
    return {**base, **counts}


def test_coverage_fits_eighty_columns_with_a_district_of_two_million_units():
    big = figures(units=2_000_000, organization_covered=1_234_567, work_covered=600_000, uncovered=165_433,
                  organization_rate=0.6172835, work_rate=0.3, standalone_units=1_000_000, standalone_rate=0.5,
                  should_establish=12_345)
    table = render.coverage_table({**big, "division": "3702", "as_of": "2026-05-01T08:00:00Z"},
                                  {"by": "division", "items": [{**big, "division": "370202001001"}]},
                                  render.breakdown_label("division", {}))
    text = rendered(table)
    assert "…" not in text and max(cell_len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "370202001001 2000000 1234567 600000 165433  61.7%  30.0% 1000000  50.0% 12345" in text
    assert "合计" in text and "覆盖情况 · 3702 · 截至 " in text


def test_breakdown_rows_are_named_in_chinese_where_known():
    assert render.breakdown_label("type", {})({"type": "platform_company"}) == "平台企业"
    assert render.breakdown_label("industry", {"express": "快递"})({"industry": "express"}) == "快递"
    assert render.breakdown_label("industry", {})({"industry": "new_one"}) == "new_one"
    assert render.breakdown_label("division", {})({"division": "370113001"}) == "370113001"


def test_percent_and_sizes():
    assert (render.percent(0.0), render.percent(0.5), render.percent(1.0), render.percent(None)) == \
        ("0.0%", "50.0%", "100.0%", "-")
    assert (render.size(10), render.size(2048), render.size(3 * 1024 * 1024)) == ("10 字节", "2.0 KB", "3.0 MB")


def test_a_reconciliation_report_in_chinese_with_fields_added_later():
    text = rendered(render.key_value_table("覆盖对账", {"units": 3, "complete": True, "districts_left": [],
                                                      "a_new_field": 1}, render.RECONCILIATION_FIELDS))
    assert "单位数" in text and "全部完成" in text and "是" in text and "无" in text and "a_new_field" in text


def test_long_dead_letter_errors_are_shortened():
    assert render.shortened("x" * 100, limit=10) == "x" * 9 + "…"
    assert render.shortened("a\n  b") == "a b"
    assert render.shortened(None) == "-"
