"""A ledger import killed halfway (kill -9 of the gateway, which runs it) and started again by the
launcher, as a process supervisor would: every good row is imported exactly once, every bad one
reported once, and the coverage counters count each unit once."""

import uuid

import pytest

from platform_testing import credit_code, wait_for

pytestmark = pytest.mark.slow

ROWS = 5_000  # 5 batches: the kill lands while most are still to come
BAD_EVERY = 500  # a row with a credit code that fails its check character


def test_an_import_killed_halfway_resumes_and_imports_every_good_row_exactly_once(platform):
    district_street = f"370113{uuid.uuid4().int % 900 + 100:03d}"
    lines = ["统一社会信用代码,单位名称,单位类型,所属行业,区划代码"]
    good_codes = set()
    for n in range(ROWS):
        code = credit_code(district_street)
        if n % BAD_EVERY == BAD_EVERY - 1:
            code = code[:-1] + ("0" if code[-1] != "0" else "1")
        else:
            good_codes.add(code)
        lines.append(f"{code},单位{n},非公企业,快递,{district_street}{n % 20 + 1:03d}")
    bad = ROWS - len(good_codes)

    with platform.client() as api:
        response = api.post("/imports", data={"ledger": "units"},
                            files={"file": ("units.csv", "\n".join(lines).encode())})
        assert response.status_code == 202, response.text
        url = f"/imports/{response.json()['id']}"
        wait_for(lambda: api.get(url).json()["imported"] > 0, timeout=120, what="the import under way")
        at_kill = api.get(url).json()
        platform.kill("gateway")
        # What was in flight: a job part done, its rows partly registered.
        assert at_kill["status"] == "running" and 0 < at_kill["progress"] < 1, at_kill

    with platform.client() as api:
        wait_for(lambda: api.get(url).json()["status"] == "done", timeout=240, what="the import resumed and done")
        job = api.get(url).json()
        assert (job["rows"], job["imported"], job["already_present"], job["rejected"]) == (ROWS, len(good_codes), 0, bad)
        coverage = api.get("/coverage", params={"division": district_street}).json()
        assert coverage["units"] == len(good_codes)  # the counters moved once per unit

        codes, cursor = [], None
        while True:
            page = api.get("/units", params={"division": district_street, "limit": 500,
                                             **({"cursor": cursor} if cursor else {})}).json()
            assert "items" in page, page
            codes += [u["credit_code"] for u in page["items"]]
            if not (cursor := page.get("next_cursor")):
                break
        assert len(codes) == len(set(codes)) and set(codes) == good_codes
