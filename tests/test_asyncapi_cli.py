"""Issue 16, item 11: the AsyncAPI document validates with the AsyncAPI CLI (pinned in
tools/asyncapi, installed by `make test`), warnings included: every message has its id, the
servers are given, the envelope requires what is always on the wire, and only what is
published has a channel (planned events are marked). The committed document is the generated
one (libs/tests/test_contracts.py)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "tools" / "asyncapi" / "node_modules" / ".bin" / "asyncapi"
DOCUMENT = ROOT / "docs" / "asyncapi.json"


@pytest.fixture(scope="module")
def validate(tmp_path_factory):
    assert CLI.exists(), "the AsyncAPI CLI is not installed: make test runs scripts/ensure_node_tools.sh"
    home = tmp_path_factory.mktemp("asyncapi")
    analytics = home / "analytics.json"  # no anonymous metrics sent from a test run
    analytics.write_text(json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "tests"}))

    def run(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLI), "validate", str(path), "--fail-severity", "warn"], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "HOME": str(home),
                                                           "ASYNCAPI_METRICS_CONFIG_PATH": str(analytics)})
    return run


def test_the_committed_document_is_valid_without_warnings(validate):
    result = validate(DOCUMENT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cli_fails_a_document_with_a_message_without_id(validate, tmp_path):
    document = json.loads(DOCUMENT.read_text())
    next(iter(document["components"]["messages"].values())).pop("messageId")
    broken = tmp_path / "asyncapi.json"
    broken.write_text(json.dumps(document))
    result = validate(broken)
    assert result.returncode != 0 and "messageId" in result.stdout + result.stderr


def test_the_envelope_requires_what_is_always_sent_and_planned_events_have_no_channel():
    document = json.loads(DOCUMENT.read_text())
    envelope = document["components"]["schemas"]["CloudEvent"]
    assert set(envelope["required"]) >= {"id", "specversion", "source", "type", "time"}
    assert envelope["properties"]["source"]["format"] == "uri-reference"
    planned = {m["name"] for m in document["components"]["messages"].values() if m.get("x-planned")}
    published = {channel["subscribe"]["message"]["$ref"].rsplit("/", 1)[1] for channel in document["channels"].values()}
    assert planned and not planned & {document["components"]["messages"][name]["name"] for name in published}
