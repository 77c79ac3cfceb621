"""Issue 16, item 11: the AsyncAPI document validates with the AsyncAPI CLI (pinned in
tools/asyncapi, installed by `make test`), warnings included: every message has its id, the
servers are given, the envelope requires what is always on the wire, and only what is
published has a channel (planned events are marked, and valid too). The committed document is the generated
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


def message_names(document: dict) -> tuple[set[str], set[str]]:
    """(event types with a channel, event types marked x-planned) of a document."""
    messages = document["components"]["messages"]
    published = {messages[channel["subscribe"]["message"]["$ref"].rsplit("/", 1)[1]]["name"]
                 for channel in document["channels"].values()}
    planned = {m["name"] for m in messages.values() if m.get("x-planned")}
    return published, planned


def test_the_envelope_requires_what_is_always_sent_and_every_message_is_published_or_planned():
    document = json.loads(DOCUMENT.read_text())
    envelope = document["components"]["schemas"]["CloudEvent"]
    assert set(envelope["required"]) >= {"id", "specversion", "source", "type", "time"}
    assert envelope["properties"]["source"]["format"] == "uri-reference"
    published, planned = message_names(document)
    assert not planned & published
    assert published | planned == {m["name"] for m in document["components"]["messages"].values()}


def without_a_source(source: str) -> dict:
    """The document as it would be if no service published `source`'s events yet."""
    from platform_contracts.asyncapi import document, published_sources

    assert source in published_sources()
    return document(published_sources() - {source})


def test_events_of_a_source_no_service_publishes_are_planned_without_a_channel():
    """Every source of the catalogue is a service of the registry today (no event is planned in
    the committed document); an event of a source not yet running keeps its message, marked."""
    from platform_contracts.events import CATALOGUE

    published, planned = message_names(without_a_source("appeal"))
    appeal_events = {event_type for event_type, (source, _) in CATALOGUE.items() if source == "appeal"}
    assert appeal_events and planned == appeal_events and not planned & published


def test_a_document_with_planned_events_is_valid_without_warnings(validate, tmp_path):
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(without_a_source("appeal")))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
