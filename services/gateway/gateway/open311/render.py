"""Open311 GeoReport v2 documents in both of its formats: JSON, and XML as the specification
writes it (schemaless, no namespace, an XML declaration naming UTF-8). Pure: no HTTP, no database.

The JSON is the "Spark convention" mapping of the XML: a list is a JSON array in JSON and a
wrapper element of repeated children in XML (`services`/`service`, `service_requests`/`request`,
`errors`/`error`, `attributes`/`attribute`, `values`/`value`, `endpoints`/`endpoint`,
`formats`/`format`). A null is `null` in JSON and an empty element in XML; booleans are
`true`/`false` in both.

Text from people (an appeal's description, a note) may hold characters XML 1.0 cannot carry
(most C0 control characters): they are left out of the XML, which would otherwise not parse."""

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree

JSON_MEDIA_TYPE = "application/json; charset=utf-8"
XML_MEDIA_TYPE = "text/xml; charset=utf-8"
FORMATS = ("json", "xml")

# The child element of each list, by the list's element name.
LIST_ITEMS = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}

# What XML 1.0 cannot hold: C0 controls but tab, newline and carriage return; surrogates; U+FFFE/F.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("", str(value))


def _element(parent: ElementTree.Element | None, tag: str, value: Any) -> ElementTree.Element:
    element = ElementTree.Element(tag) if parent is None else ElementTree.SubElement(parent, tag)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _element(element, key, item)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        child = LIST_ITEMS[tag]
        for item in value:
            _element(element, child, item)
    else:
        element.text = xml_text(value)
    return element


def to_xml(root: str, value: Any) -> bytes:
    """`value` (a list, or a mapping) as the document <root>...</root>, with its declaration."""
    tree = _element(None, root, value)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(tree, encoding="unicode").encode()


def to_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def render(fmt: str, root: str, value: Any) -> tuple[bytes, str]:
    """(body, content type) of a document in `fmt` ("json" or "xml"; anything else is XML, the
    format the specification requires)."""
    if fmt == "json":
        return to_json(value), JSON_MEDIA_TYPE
    return to_xml(root, value), XML_MEDIA_TYPE


def errors_document(errors: list[tuple[int, str]]) -> list[dict]:
    return [{"code": code, "description": description} for code, description in errors]
