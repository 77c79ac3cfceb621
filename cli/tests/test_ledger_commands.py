"""What pb does with import outcomes the real platform seldom gives on demand (an import it
gives up on, a refused download, an operator who stops waiting), on stand-in answers shaped
as the gateway's (routes/ledgers.py). tests/test_cli.py runs the usual ones for real."""

import json

import httpx
import pytest
from click.testing import CliRunner

from pb_cli import main
from pb_cli.main import cli

IMPORT_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def signed_in(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PB_TOKEN", "a-token")
    monkeypatch.delenv("PB_URL", raising=False)
    monkeypatch.setattr(main, "POLL_FIRST_SECONDS", 0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "units.xlsx").write_bytes(b"PK\x03\x04 a workbook")


def an_import(**fields) -> dict:
    return {"id": IMPORT_ID, "ledger": "units", "filename": "units.xlsx", "status": "queued", "rows": None,
            "imported": 0, "already_present": 0, "rejected": 0, "progress": 0.0, "error": None,
            "created_by": "u1", "created_at": "2026-05-01T08:00:00Z", "finished_at": None, "errors_url": None,
            **fields}


def run(handler, *args: str):
    return CliRunner().invoke(cli, list(args), obj={"transport": httpx.MockTransport(handler)}, prog_name="pb")


def test_an_import_the_platform_gives_up_on_exits_1_with_its_reason():
    answers = iter([an_import(status="running", rows=10, progress=0.5),
                    an_import(status="failed", rows=10, progress=0.5, error="the file could not be read")])

    def platform(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert request.url.path == "/api/v1/imports"
            assert b'name="ledger"\r\n\r\nunits' in request.read()
            return httpx.Response(202, json=an_import())
        return httpx.Response(200, json=next(answers))

    result = run(platform, "import", "units", "units.xlsx")
    assert result.exit_code == 1
    assert f"导入 {IMPORT_ID} 失败：the file could not be read" in result.stderr

    answers = iter([an_import(status="failed", error="the file could not be read")])
    as_json = run(platform, "import", "units", "units.xlsx", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["errors_file"] is None and json.loads(as_json.stdout)["status"] == "failed"


def test_a_refused_download_leaves_no_file(tmp_path):
    def platform(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"status": 403, "title": "Outside your scope", "detail": "not yours"},
                              headers={"content-type": "application/problem+json"})

    result = run(platform, "export", "members", "-o", "members.xlsx")
    assert result.exit_code == 1 and "平台拒绝了请求（403 超出权限范围）" in result.stderr
    assert list(tmp_path.glob("members.xlsx*")) == [] and list(tmp_path.glob(".members.xlsx*")) == []


def test_stopping_the_wait_leaves_the_import_running_and_says_how_to_follow_it():
    def platform(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json=an_import())
        raise KeyboardInterrupt  # Ctrl-C while asking for progress

    result = run(platform, "import", "units", "units.xlsx")
    assert result.exit_code == 130
    assert f"pb import status {IMPORT_ID} --wait" in result.stderr
