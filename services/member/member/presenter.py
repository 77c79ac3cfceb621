"""Stored documents as the contract's resources: `id` for `_id`, JSON types, personal data
masked, ciphertexts and blind indexes left out."""

from service_kit.documents import json_ready

SECRET_FIELDS = ("id_number_encrypted", "id_number_index", "phone_encrypted")
MASKED_FIELDS = {"id_number_masked": "id_number", "phone_masked": "phone"}


def as_resource(document: dict | None) -> dict | None:
    """A stored document as the contract's resource: `id`, masked personal data, JSON types."""
    if document is None:
        return None
    resource = {"id": document["_id"]}
    for key, value in document.items():
        if key == "_id" or key in SECRET_FIELDS:
            continue
        resource[MASKED_FIELDS.get(key, key)] = json_ready(value)
    return resource
