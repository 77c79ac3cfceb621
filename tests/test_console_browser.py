"""Issue 15, the operator console in a real browser: Debian's headless Chromium, driven by
Playwright, on the console the gateway serves at /console/ of the platform as `make run` starts
it (make builds console/dist and installs chromium: scripts/ensure_console.sh). Each test signs
in through the login form as an account of its own and works on divisions of its own (district
370116 and, for the other district's data, 370117; the ledger import, 370114's street 906), so the
tests do not depend on each other or on their order. Every wait is on a condition in the page
(Playwright's `expect`), never on time. A screenshot of each view goes to test-artifacts/console/."""

import re
import time
import uuid
from pathlib import Path

import pytest
from openpyxl import load_workbook
from playwright.sync_api import expect, sync_playwright

from platform_testing import credit_code
from tests.harness import ROOT
from tests.test_e2e_ledgers import UNIT_HEADERS, xlsx
from tests.test_e2e_transfers import PASSWORD, created, full_member, joint_branch, ok, unit_body

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")  # Debian's (scripts/ensure_console.sh --browser); no `playwright install`
SCREENSHOTS = ROOT / "test-artifacts" / "console"
DISTRICT, OTHER_DISTRICT = "370116", "370117"  # Laiwu and Gangcheng, Jinan: no other test's data
LAIWU = (117.6766, 36.2136)  # WGS-84, near the district government
LIVE_WITHIN_MS = 3_000  # "within a second or two" of the POST, with room for a busy 2-core machine
IMPORT_WITHIN_MS = 30_000  # a five-row ledger, queued behind whatever else the platform imports


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), "no /usr/bin/chromium: make test installs it (scripts/ensure_console.sh --browser)"
    with sync_playwright() as playwright:
        # No sandbox: make test runs as root (CI does), where chromium refuses to start with one.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    # Less motion asked for: the console then draws without transitions, so screenshots show the end state.
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", reduced_motion="reduce")
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"script errors in the console: {errors}"


def user(admin, role: str, scope) -> str:
    username = f"console{role[:4]}{uuid.uuid4().hex[:6]}"
    created(admin.post("/users", json={"username": username, "password": PASSWORD, "role": role, "scope": scope}))
    return username


def sign_in(page, platform, username: str) -> None:
    """Through the login form, as a person would."""
    page.goto(f"{platform.gateway_url}/console/")
    page.get_by_test_id("username").fill(username)
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("who")).to_contain_text(username)
    expect(page.get_by_test_id("stream-status")).to_have_text("实时连接")


def show(page, platform, route: str) -> None:
    page.goto(f"{platform.gateway_url}/console/#{route}")


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def station_body(division: str, name: str, offset: float = 0.0) -> dict:
    return {"kind": "warm_station", "name": name, "division": division, "address": "莱芜区凤城街道",
            "location": {"lng": LAIWU[0] + offset, "lat": LAIWU[1] + offset}, "amenities": ["water", "charging"],
            "capacity": 12, "opening_hours": "24/7"}


def test_a_coverage_rate_moves_on_screen_when_a_unit_is_registered(platform, page):
    street = DISTRICT + "901"
    with platform.client() as admin:
        covered = created(admin.post("/units", json=unit_body(street + "001")))
        created(admin.post("/organizations", json={
            "name": "莱芜快递企业支部", "kind": "branch", "formation": "standalone", "division": street,
            "unit_ids": [covered["id"]], "secretary": "张书记"}))
        operator = user(admin, "operator", DISTRICT)

    sign_in(page, platform, operator)
    show(page, platform, f"/coverage?division={street}")
    expect(page.get_by_test_id("count-units")).to_have_text("1")
    expect(page.get_by_test_id("rate-organization")).to_have_text("100.0%")
    expect(page.get_by_test_id("rate-standalone")).to_have_text("100.0%")
    expect(page.get_by_test_id("breakdown-table")).to_contain_text("1（100.0%）")

    with platform.client() as admin:
        posted_at = time.monotonic()
        uncovered = created(admin.post("/units", json=unit_body(street + "002")))
    # The figures follow the stream's coverage.changed, without a reload.
    expect(page.get_by_test_id("rate-organization")).to_have_text("50.0%", timeout=LIVE_WITHIN_MS)
    seconds = time.monotonic() - posted_at
    expect(page.get_by_test_id("count-organization")).to_have_text("1 / 2 家")
    expect(page.get_by_test_id("count-units")).to_have_text("2")
    expect(page.get_by_test_id("uncovered-table")).to_contain_text(uncovered["name"])
    expect(page.get_by_test_id("uncovered-table")).not_to_contain_text(covered["name"])
    print(f"coverage rate on screen {seconds * 1000:.0f} ms after POST /units")
    screenshot(page, "coverage")


def test_a_supply_running_low_is_highlighted_as_it_happens(platform, page):
    street = DISTRICT + "902"
    with platform.client() as admin:
        station = created(admin.post("/stations", json=station_body(street, "莱芜暖新驿站")))
        other = created(admin.post("/stations", json=station_body(street, "凤城小哥之家", offset=0.01)))
        ok(admin.put(f"/stations/{station['id']}/supplies/water", json={"quantity": 10, "low_threshold": 3,
                                                                         "unit": "箱"}))
        created(admin.post(f"/stations/{station['id']}/visits", json={"visitor": "anonymous"}))
        created(admin.post(f"/stations/{station['id']}/activities", json={
            "title": "夏日送清凉", "season": "summer_cooling", "starts_at": "2030-07-01T09:00:00+08:00",
            "ends_at": "2030-07-01T11:00:00+08:00", "capacity": 30, "description": "为骑手送绿豆汤"}))
        manager = user(admin, "station_manager", [station["id"], other["id"]])

    sign_in(page, platform, manager)
    show(page, platform, f"/stations/{station['id']}")
    water = page.get_by_test_id("supplies-table").locator("tr", has_text="饮用水")
    expect(water).to_contain_text("充足")
    expect(page.get_by_test_id("activities-table")).to_contain_text("夏日送清凉")
    with platform.client() as admin:
        ok(admin.post(f"/stations/{station['id']}/supplies/water/adjust", json={"delta": -8, "reason": "发放"}))
    expect(water).to_have_class(re.compile(r"\bsupply-low\b"))
    expect(water).to_contain_text("库存不足")
    screenshot(page, "station")

    show(page, platform, "/stations")
    expect(page.get_by_test_id("low-count")).to_have_text("物资不足 1")
    low_row = page.get_by_test_id("stations-table").locator("tr", has_text="莱芜暖新驿站")
    expect(low_row).to_contain_text("物资不足：饮用水 剩 2")
    with platform.client() as admin:  # the manager's other station runs low too: the map follows, live
        ok(admin.put(f"/stations/{other['id']}/supplies/water", json={"quantity": 1, "low_threshold": 3}))
    expect(page.get_by_test_id("low-count")).to_have_text("物资不足 2")
    screenshot(page, "stations")


def test_an_operator_sees_nothing_of_another_district(platform, page):
    street, other_street = DISTRICT + "903", OTHER_DISTRICT + "903"
    with platform.client() as admin:
        ours = created(admin.post("/units", json=unit_body(street + "001")))
        theirs = created(admin.post("/units", json=unit_body(other_street + "001")))
        our_station = created(admin.post("/stations", json=station_body(street, f"本区驿站{uuid.uuid4().hex[:4]}")))
        their_station = created(admin.post("/stations", json=station_body(other_street,
                                                                           f"外区驿站{uuid.uuid4().hex[:4]}")))
        operator = user(admin, "operator", DISTRICT)
        # The other district's data is there: its own operator sees it.
        assert theirs["id"] in {u["id"] for u in ok(admin.get("/units", params={"division": other_street}))["items"]}

    sign_in(page, platform, operator)
    show(page, platform, "/coverage")
    expect(page.get_by_test_id("uncovered-table")).to_contain_text(ours["name"])
    expect(page.get_by_test_id("uncovered-table")).not_to_contain_text(theirs["name"])
    district = page.get_by_test_id("division-level-0")
    expect(district).to_contain_text("莱芜区")
    expect(district.locator("input")).to_be_disabled()  # an operator of a district picks only below it

    # A link to the other district: refused in words, and the operator's own district shown instead.
    show(page, platform, f"/coverage?division={other_street}")
    expect(page.get_by_test_id("outside-scope")).to_contain_text(other_street)
    expect(page.get_by_test_id("uncovered-table")).to_contain_text(ours["name"])
    expect(page.locator("body")).not_to_contain_text(theirs["name"])
    screenshot(page, "coverage-outside-scope")

    show(page, platform, "/stations")
    expect(page.get_by_test_id("stations-table")).to_contain_text(our_station["name"])
    expect(page.get_by_test_id("stations-table")).not_to_contain_text(their_station["name"])


def test_appeals_transfers_and_notifications_offer_what_the_user_may_do(platform, page):
    street = DISTRICT + "904"
    with platform.client() as admin:
        operator = user(admin, "operator", DISTRICT)
        department = created(admin.post("/departments", json={"name": "莱芜区人社局", "division": DISTRICT}))
        ok(admin.put("/appeal-routing", json={"category": "hazard", "division": DISTRICT,
                                              "department_id": department["id"]}))
        appeal = created(admin.post("/appeals", json={
            "category": "hazard", "title": "路口井盖缺失", "description": "骑手夜间送餐经过，存在安全隐患",
            "division": street, "submitter": {"kind": "anonymous"}}))
        unit = created(admin.post("/units", json=unit_body(street + "001")))
        sending, receiving = joint_branch(admin, street, unit["id"]), joint_branch(admin, street, unit["id"])
        member = full_member(admin, sending, unit)
        transfer = created(admin.post("/transfers", json={"member_id": member["id"],
                                                          "to_organization_id": receiving["id"], "reason": "工作调动"}))

    sign_in(page, platform, operator)
    show(page, platform, "/appeals")
    card = page.get_by_test_id(f"appeal-{appeal['id']}")
    expect(page.get_by_test_id("column-submitted").get_by_test_id(f"appeal-{appeal['id']}")).to_be_visible()
    card.click()
    actions = page.get_by_test_id("appeal-actions")
    expect(actions.get_by_test_id("action-accept")).to_be_visible()
    expect(actions.get_by_test_id("action-rate")).to_have_count(0)  # only whoever raised it rates it
    actions.get_by_test_id("action-accept").click()
    expect(page.get_by_test_id("column-accepted").get_by_test_id(f"appeal-{appeal['id']}")).to_be_visible()
    expect(actions.get_by_test_id("action-resolve")).to_be_visible()
    expect(actions.get_by_test_id("action-accept")).to_have_count(0)
    expect(page.get_by_role("dialog")).to_contain_text("受理 · " + operator)  # the history
    screenshot(page, "appeal")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    screenshot(page, "appeals")

    show(page, platform, "/transfers")
    awaiting = page.get_by_test_id("awaiting-table")
    expect(awaiting).to_contain_text(member["name"])
    expect(awaiting.get_by_test_id("transfer-approve")).to_be_visible()
    expect(awaiting.get_by_test_id("transfer-receive")).to_have_count(0)  # not before the letter
    screenshot(page, "transfers")
    with platform.client() as admin:  # approved elsewhere: the step moves on, live
        ok(admin.post(f"/transfers/{transfer['id']}/approve", json={}))
    expect(awaiting.get_by_test_id("transfer-receive")).to_be_visible()
    expect(awaiting.get_by_test_id("transfer-approve")).to_have_count(0)

    show(page, platform, "/notifications")
    expect(page.get_by_test_id("notifications-table")).to_contain_text("转接待接收")
    screenshot(page, "notifications")


def test_an_operator_imports_a_ledger_and_gets_the_rejected_rows_back(platform, page, tmp_path):
    street = "370114906"  # Zhangqiu, a street of this test's own
    good = [[credit_code(street), f"章丘快递网点{n}", "非公企业", "快递", f"{street}{n:03d}", 8, "否"] for n in (1, 2, 3)]
    bad = [["91370114MA3C0XXX1X", "信用代码错", "非公企业", "快递", street + "001", 3, "否"],
           [credit_code(street), "", "非公企业", "快递", street + "001", 3, "否"]]  # no name
    ledger = tmp_path / "章丘单位台账.xlsx"
    ledger.write_bytes(xlsx(UNIT_HEADERS, good + bad))
    with platform.client() as admin:
        operator = user(admin, "operator", "370114")

    sign_in(page, platform, operator)
    page.get_by_test_id("menu-ledgers").click()
    expect(page.get_by_test_id("ledger-units")).to_be_visible()
    with page.expect_download() as template:
        page.get_by_test_id("template-xlsx").click()
    assert template.value.suggested_filename == "units.xlsx"

    page.get_by_test_id("upload").locator("input[type=file]").set_input_files(ledger)
    # Progress and counts follow the stream's import.progressed / import.finished, without a reload.
    expect(page.get_by_test_id("import-status")).to_have_text("完成", timeout=IMPORT_WITHIN_MS)
    expect(page.get_by_test_id("import-progress")).to_have_attribute("aria-valuenow", "100")
    for count, value in (("rows", "5"), ("imported", "3"), ("already-present", "0"), ("rejected", "2")):
        expect(page.get_by_test_id(f"count-{count}")).to_have_text(value)
    listed = page.get_by_test_id("imports-table").locator("tr", has_text=ledger.name)
    expect(listed).to_contain_text("完成")
    screenshot(page, "ledgers")

    with page.expect_download() as errors:
        page.get_by_test_id("download-errors").click()
    assert errors.value.suggested_filename.endswith("-errors.xlsx")
    saved = tmp_path / errors.value.suggested_filename
    errors.value.save_as(saved)
    rows = list(load_workbook(saved).active.iter_rows(values_only=True))
    assert rows[0][:2] == ("错误原因", "原行号") and [row[1] for row in rows[1:]] == [5, 6], rows
    assert "【单位名称】必填" in rows[2][0] and rows[2][2] == bad[1][0]
    with platform.client() as admin:
        units = ok(admin.get("/units", params={"division": street, "limit": 100}))["items"]
        assert sorted(u["credit_code"] for u in units) == sorted(row[0] for row in good)

    # A file without a required column is refused at once, the missing column named in Chinese.
    missing = tmp_path / "缺列.xlsx"
    missing.write_bytes(xlsx(UNIT_HEADERS[1:], [row[1:] for row in good]))
    page.get_by_test_id("upload").locator("input[type=file]").set_input_files(missing)
    expect(page.get_by_test_id("upload-problem")).to_contain_text("未导入任何行")
    expect(page.get_by_test_id("upload-problem")).to_contain_text("缺少必填列：统一社会信用代码")
    screenshot(page, "ledgers-refused")
