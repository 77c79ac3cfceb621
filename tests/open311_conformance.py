"""Conformance checks of Open311 GeoReport v2 answers, shared by the gateway's Open311 tests and
the end-to-end ones: JSON against the Open311 project's JSON Schemas (read where they are kept,
the `shared/reference/open311-georeport-v2/` folder beside the project, never copied), and XML
parsed and read back into
the same shape, so that the two formats are checked to say the same thing.

The schemas come from open311/schema-validation (request, requests, service, services,
service-definition) and its Swagger document (RequestResponse, TokenResponse: POST requests and
GET tokens). Errors and discovery have no published schema: theirs below follow the
specification's text (GeoReport v2 "Errors", Service Discovery "Fields for All Versions")."""

import json
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7



def _shared_folder() -> Path:
    """`shared/` beside the project: PARTYBUILDING_SHARED_DIR if set, else beside this checkout,
    else beside the repository it was cloned from (a CI clone made elsewhere from a local path)."""
    root = Path(__file__).resolve().parents[1]
    candidates = [Path(os.environ["PARTYBUILDING_SHARED_DIR"])] if os.environ.get("PARTYBUILDING_SHARED_DIR") else []
    candidates.append(root.parent / "shared")
    origin = subprocess.run(["git", "-C", str(root), "config", "--get", "remote.origin.url"], capture_output=True,
                            text=True).stdout.strip()
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:
        candidates.append(Path(origin).resolve().parent / "shared")
    for candidate in candidates:
        if (candidate / "reference").is_dir():
            return candidate
    raise FileNotFoundError("the shared folder (shared/reference/open311-georeport-v2) is not beside the project; "
                            f"looked in {', '.join(map(str, candidates))}; set PARTYBUILDING_SHARED_DIR")


REFERENCE = _shared_folder() / "reference" / "open311-georeport-v2"
SCHEMA_FILES = ("request.json", "requests.json", "service.json", "services.json", "service-definition.json")

FORMATS = FormatChecker()
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@FORMATS.checks("date-time")
def _date_time(value) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value)
    return True


@FORMATS.checks("uri")
def _uri(value) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def _load(name: str) -> dict:
    return json.loads((REFERENCE / name).read_text("utf-8"))


def _swagger_definition(name: str) -> dict:
    return _load("swagger.json")["definitions"][name]


ERRORS_SCHEMA = {
    "type": "array", "minItems": 1,
    "items": {"type": "object", "required": ["code", "description"],
              "properties": {"code": {"type": "integer"}, "description": {"type": "string", "minLength": 1}}},
}
DISCOVERY_SCHEMA = {
    "type": "object", "required": ["changeset", "contact", "key_service", "endpoints"],
    "properties": {
        "changeset": {"type": "string"}, "contact": {"type": "string"}, "key_service": {"type": "string"},
        "endpoints": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["specification", "url", "changeset", "type", "formats"],
            "properties": {"specification": {"type": "string"}, "url": {"type": "string", "format": "uri"},
                           "changeset": {"type": "string"}, "type": {"enum": ["production", "test"]},
                           "formats": {"type": "array", "items": {"type": "string"}, "minItems": 1}}}},
    },
}


def _registry() -> Registry:
    return Registry().with_resources(
        (name, Resource.from_contents(_load(name), default_specification=DRAFT7)) for name in SCHEMA_FILES)


REGISTRY = _registry()
SCHEMAS = {
    "requests": {"$ref": "requests.json"},
    "request": {"$ref": "request.json"},
    "services": {"$ref": "services.json"},
    "service": {"$ref": "service.json"},
    "service_definition": {"$ref": "service-definition.json"},
    "submitted": {"type": "array", "minItems": 1, "items": _swagger_definition("RequestResponse")},
    "tokens": {"type": "array", "minItems": 1, "items": _swagger_definition("TokenResponse")},
    "errors": ERRORS_SCHEMA,
    "discovery": DISCOVERY_SCHEMA,
}


def schema_errors(kind: str, document) -> list[str]:
    validator = Draft7Validator(SCHEMAS[kind], registry=REGISTRY, format_checker=FORMATS)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def assert_valid(kind: str, document) -> None:
    errors = schema_errors(kind, document)
    assert not errors, f"not a valid Open311 {kind} document: {errors}\n{json.dumps(document, ensure_ascii=False)[:2000]}"


# ---- XML -------------------------------------------------------------------------------------

# XML list elements and their items (the specification's "⇊" and "↴").
LISTS = {"services": "service", "service_requests": "request", "errors": "error", "attributes": "attribute",
         "values": "value", "endpoints": "endpoint", "formats": "format"}
BOOLEANS = {"metadata", "variable", "required"}
NUMBERS = {"lat", "long", "code", "order"}
# Each kind's root element, and whether its JSON is an array.
ROOTS = {"requests": "service_requests", "submitted": "service_requests", "tokens": "service_requests",
         "services": "services", "service_definition": "service_definition", "errors": "errors",
         "discovery": "discovery"}


def _read(element: ElementTree.Element, list_item: str | None = None):
    if list_item is not None:
        assert all(child.tag == list_item for child in element), (element.tag, [c.tag for c in element])
        return [_read(child, LISTS.get(child.tag) if child.tag in LISTS else None) for child in element]
    if len(element):
        return {child.tag: _read(child, LISTS.get(child.tag)) for child in element}
    text = element.text
    if text is None or text == "":
        return None
    if element.tag in BOOLEANS:
        assert text in ("true", "false"), (element.tag, text)
        return text == "true"
    if element.tag in NUMBERS and re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text) if element.tag in ("lat", "long") else int(float(text))
    return text


def parse_xml(kind: str, body: bytes):
    """An XML answer read into the shape of its JSON (null for an empty element), after checking
    its declaration (UTF-8) and its root."""
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?>'), body[:80]
    root = ElementTree.fromstring(body)
    assert root.tag == ROOTS[kind], (kind, root.tag)
    if root.tag in LISTS:
        return _read(root, LISTS[root.tag])
    return {child.tag: _read(child, LISTS.get(child.tag)) for child in root}


def same_content(json_document, xml_document) -> bool:
    """Whether the XML read back says what the JSON says (an empty list and an absent element
    alike in XML; numbers compared as numbers)."""
    def norm(value):
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items() if v not in (None, [], "")}
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return float(value)
        return value
    return norm(json_document) == norm(xml_document)
