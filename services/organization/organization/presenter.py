"""Stored documents as the contract's resources: `id` for `_id`, JSON types, internal fields
left out, phones masked."""

from platform_contracts.codes import mask_phone
from service_kit.documents import json_ready

INTERNAL_FIELDS = ("standalone_organization_ids", "command_id", "phone_encrypted", "phone_masked")


def as_resource(document: dict | None) -> dict | None:
    """A stored document as the contract's resource: `id`, no internal fields, JSON types."""
    if document is None:
        return None
    resource = {"id": document["_id"], **{k: json_ready(v) for k, v in document.items()
                                          if k != "_id" and k not in INTERNAL_FIELDS}}
    if "phone_masked" in document:
        resource["phone"] = document["phone_masked"]
    elif "phone" in resource:  # stored in clear by an older version, until migrate encrypts it
        resource["phone"] = mask_phone(resource["phone"])
    return resource


def division_resource(document: dict) -> dict:
    return {"code": document["_id"], "name": document["name"], "level": document["level"]}


def industry_resource(document: dict) -> dict:
    return {"code": document["_id"], "name": document["name"], "gb4754": document.get("gb4754")}
